"""Pixel layout conversions between the protocol (row 0 = top, uint8/float) and Blender images
(flat float32 RGBA, row 0 = bottom). Vectorised: ``Image.pixels.foreach_set`` takes the result directly."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def to_blender_pixels(image: NDArray[Any]) -> NDArray[np.float32]:
    """``H W``, ``H W 1``, ``H W 3`` or ``H W 4`` (uint8, uint16 or float) -> flat float32 RGBA, bottom row first."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected H W [1|3|4], got shape {array.shape}")
    height, width, channels = array.shape
    if array.dtype == np.uint8:
        values = array.astype(np.float32) * np.float32(1 / 255)
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) * np.float32(1 / 65535)
    else:
        values = array.astype(np.float32, copy=False)
    rgba = np.empty((height, width, 4), dtype=np.float32)
    if channels == 1:
        rgba[:, :, :3] = values
    else:
        rgba[:, :, :3] = values[:, :, :3]
    rgba[:, :, 3] = values[:, :, 3] if channels == 4 else 1.0
    return np.ascontiguousarray(rgba[::-1]).reshape(-1)


def from_blender_pixels(pixels: NDArray[np.float32], width: int, height: int, channels: int = 4) -> NDArray[np.uint8]:
    """Flat float RGBA (bottom row first, as ``foreach_get`` returns) -> ``H W 3`` uint8, row 0 = top."""
    array = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)[::-1, :, :3]
    return np.ascontiguousarray(np.clip(np.rint(array * 255), 0, 255).astype(np.uint8))
