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


MIN_MASK_COVERAGE = 0.005
"""An edit of selected objects needs them to cover at least this fraction of some view's pixels."""


def mask_problem(masks: list[Any], objects: list[str]) -> str | None:
    """Why the selected objects' masks (``uint8 [h, w]``, 255 inside) cannot guide an edit: they cover under
    :data:`MIN_MASK_COVERAGE` of the pixels of every view. None when some view shows them."""
    if not masks:
        return None
    best = max(float(np.count_nonzero(mask)) / max(mask.size, 1) for mask in masks)
    if best >= MIN_MASK_COVERAGE:
        return None
    names = ", ".join(f"'{name}'" for name in objects[:5]) + (" ..." if len(objects) > 5 else "")
    return (f"the selected objects ({names}) cover {best:.2%} of the pixels at most in any view (at least "
            f"{MIN_MASK_COVERAGE:.1%} is needed): they are hidden, behind other objects, outside the cameras' "
            "views or too small in them. Show them, move the cameras closer, or edit the whole scene")


def upload_image(item: Any) -> Any:
    """An array (row 0 = top) or an image file, as a ``protocol.RawImage``."""
    if isinstance(item, (str, Path)):
        return file_image(Path(item))
    return protocol.RawImage.from_array(np.ascontiguousarray(item))
