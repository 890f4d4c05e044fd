"""Images a client sent: raw pixels laid out as their ``ImageInfo`` says, or a PNG / JPEG file of that size."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from protocol import ValidationError
from protocol import messages as m

MAX_DECODED_PIXELS = 1 << 28
"""Larger images are refused before decoding (a tiny PNG can claim a huge size: a decompression bomb)."""


def decode_image(info: m.ImageInfo, buffer: Any, field: str) -> np.ndarray:
    """``H W`` or ``H W C`` pixels of one received image; :class:`ValidationError` naming ``field`` when an encoded
    file does not decode or is not the size ``info.shape`` says."""
    if info.encoding == "raw":
        return np.frombuffer(buffer, dtype=info.dtype).reshape(info.shape)
    height, width = info.shape[:2]
    if height * width > MAX_DECODED_PIXELS:
        raise ValidationError(f"{width}x{height} is more than this server decodes", field=f"{field}.shape")
    try:
        with Image.open(io.BytesIO(memoryview(buffer).tobytes())) as image:
            if image.size != (width, height):
                raise ValidationError(f"the {info.encoding} file is {image.size[0]}x{image.size[1]}, the image "
                                      f"info says {width}x{height}", field=f"{field}.shape")
            if image.mode in ("I;16", "I;16B", "I"):
                return np.asarray(image, dtype=np.uint16)
            mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(info.shape[2] if len(info.shape) == 3 else 1, "RGBA")
            return np.asarray(image.convert(mode))
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValidationError(f"not a readable {info.encoding} file ({error})", field=field) from None
