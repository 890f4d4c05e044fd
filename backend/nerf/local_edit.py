"""Edits that stay where the user pointed: the selected objects' mask of each view (rendered by Blender).

InstructPix2Pix edits everything in view (in2n's "grizzly markers" around a panda). With a mask, each edited image
keeps the original pixels outside the (slightly dilated, feathered) mask, so the editor's spill never reaches the
NeRF; for an object that covers a small part of the view the editor works on a crop around it, at its full working
size, and the crop is pasted back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

CROP_BELOW = 0.5
"""Crop around the mask when its (padded) box covers less than this fraction of the view."""
CROP_PADDING = 0.25
"""Context around the mask's box in a crop, as a fraction of the box's larger side (the editor sees some scene)."""


def soft_mask(mask: Tensor, dilation_px: int, feather_px: int) -> Tensor:
    """``H W`` in {0, 1} -> ``H W`` in [0, 1]: exactly 1 on the mask grown by ``dilation_px``, then a smooth ramp
    down to 0 over about ``2 * feather_px`` further pixels (grown by ``feather_px`` more, then two box blurs of that
    reach: the ramp lies outside the dilated mask, never inside)."""
    image = (mask.float() > 0.5).float()[None, None]
    radius = max(1, feather_px // 2) if feather_px > 0 else 0
    grow = dilation_px + 2 * radius
    if grow > 0:
        image = F.max_pool2d(image, 2 * grow + 1, stride=1, padding=grow)
    for _ in range(2 if radius else 0):
        image = F.avg_pool2d(F.pad(image, [radius] * 4, mode="replicate"), 2 * radius + 1, stride=1)
    return image[0, 0].clamp(0, 1)


def crop_box(mask: Tensor) -> tuple[int, int, int, int] | None:
    """``(top, left, bottom, right)`` of a square-ish crop around ``mask`` (``H W``), with context; None when the
    mask is empty or the crop would cover most of the view anyway."""
    rows, columns = torch.nonzero(mask > 0, as_tuple=True)
    if len(rows) == 0:
        return None
    height, width = mask.shape
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(columns.min()), int(columns.max()) + 1
    side = max(bottom - top, right - left)
    side = min(max(height, width), int(side * (1 + 2 * CROP_PADDING)) + 1)
    center_y, center_x = (top + bottom) // 2, (left + right) // 2
    top = min(max(0, center_y - side // 2), max(0, height - side))
    left = min(max(0, center_x - side // 2), max(0, width - side))
    bottom, right = min(height, top + side), min(width, left + side)
    if (bottom - top) * (right - left) >= CROP_BELOW * height * width:
        return None
    return top, left, bottom, right


def edit_locally(edit: Callable[[Tensor, Tensor], Tensor], render: Tensor, original: Tensor, mask: Tensor, *,
                 crop: bool = True) -> Tensor:
    """The edited view (``H W 3``): ``edit(render, original)`` (on a crop around ``mask`` when small) where the
    soft ``mask`` is 1, the original pixels where it is 0, blended between."""
    if float(mask.max()) <= 0:
        return original.clone()  # none of the selected objects is in view: nothing to edit here
    box = crop_box(mask) if crop else None
    if box is None:
        edited = edit(render, original)
    else:
        top, left, bottom, right = box
        edited = original.clone()
        edited[top:bottom, left:right] = edit(render[top:bottom, left:right], original[top:bottom, left:right])
    weight = mask[..., None].to(edited)
    return weight * edited + (1 - weight) * original
