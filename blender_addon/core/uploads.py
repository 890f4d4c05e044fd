"""Images as the protocol uploads them: raw arrays, or PNG / JPEG files sent as they are (compressed, and never
decoded on Blender's side: the server decodes and checks them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .protocol_link import capture, protocol

JPEG_SUFFIXES = (".jpg", ".jpeg")


def file_image(path: Path) -> Any:
    """A ``protocol.RawImage`` of an image file's bytes, its shape read from the file's header."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix.lower() in JPEG_SUFFIXES:
        width, height = capture.image_size(path)
        return protocol.RawImage.from_encoded(data, "jpeg", [height, width, 3])
    width, height, channels, depth = capture.png_layout(path)
    # grey + alpha arrives as RGBA; 16-bit PNGs as uint16
    shape = [height, width] if channels == 1 else [height, width, 4 if channels in (2, 4) else 3]
    return protocol.RawImage.from_encoded(data, "png", shape, "uint16" if depth == 16 else "uint8")


def upload_image(item: Any) -> Any:
    """An array (row 0 = top) or an image file, as a ``protocol.RawImage``."""
    if isinstance(item, (str, Path)):
        return file_image(Path(item))
    return protocol.RawImage.from_array(np.ascontiguousarray(item))
