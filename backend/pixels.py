"""The one float-to-8-bit conversion of the backend (training images, renders, edits, baked textures, point colours):
values in [0, 1] (a numpy array or a torch tensor, on any device) to uint8, rounded to nearest, NaN as 0."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_uint8(image: Any) -> np.ndarray:
    """``image`` (any shape) in [0, 1] as uint8 with the same shape; out-of-range values are clipped."""
    if hasattr(image, "detach"):  # a torch tensor: to host memory first (torch is not imported here)
        image = image.detach().float().cpu().numpy()
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(values, 0, 1) * 255 + 0.5).astype(np.uint8)
