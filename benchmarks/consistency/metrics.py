"""Image metrics of the consistency benchmark (no learned metrics: LPIPS needs weights this benchmark cannot assume).

All images are ``H W 3`` float arrays or tensors in [0, 1]. PSNR over a region averages the squared error over the
region's pixels only; SSIM is torchmetrics' Gaussian-window SSIM (11 px, sigma 1.5), optionally averaged over a region
of its per-pixel map.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

ArrayLike = np.ndarray | Tensor
MAX_PSNR = 100.0
"""PSNR reported for identical images (instead of infinity, which JSON cannot hold)."""


def _tensor(image: ArrayLike) -> Tensor:
    tensor = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image).float()
    if tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"expected an H W 3 image, got shape {tuple(tensor.shape)}")
    return tensor.cpu()


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float in [0, 1] (floats pass through)."""
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def psnr(prediction: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """PSNR in dB for data range 1, over all pixels or only those where ``mask`` (``H W`` bool) is true."""
    error = (_tensor(prediction) - _tensor(target)) ** 2
    if mask is not None:
        selected = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool().cpu()
        if selected.shape != error.shape[:2]:
            raise ValueError(f"mask of shape {tuple(selected.shape)} does not match the image {tuple(error.shape[:2])}")
        if not bool(selected.any()):
            return float("nan")
        error = error[selected]
    mse = float(error.mean())
    return MAX_PSNR if mse <= 10 ** (-MAX_PSNR / 10) else -10.0 * math.log10(mse)


def ssim(prediction: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """SSIM (torchmetrics, data range 1); with ``mask`` the mean of the SSIM map over the masked pixels."""
    a = _tensor(prediction).permute(2, 0, 1)[None]
    b = _tensor(target).permute(2, 0, 1)[None]
    if mask is None:
        value = structural_similarity_index_measure(a, b, data_range=1.0)
        assert isinstance(value, Tensor)  # a tuple only with return_full_image=True
        return float(value)
    _, full = structural_similarity_index_measure(a, b, data_range=1.0, return_full_image=True)
    per_pixel = full[0].mean(0)  # H W (torchmetrics pads the map back to the image size)
    selected = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool()
    return float(per_pixel[selected].mean()) if bool(selected.any()) else float("nan")


def edited_region_mask(original: ArrayLike, edited: ArrayLike, threshold: float = 0.04, dilate_px: int = 2
                       ) -> np.ndarray:
    """``H W`` bool: pixels the edit changed (largest channel difference above ``threshold``), grown by
    ``dilate_px`` so that anti-aliased edges count as edited; its complement is the region that must not change."""
    difference = (_tensor(original) - _tensor(edited)).abs().amax(-1)
    changed = (difference > threshold).float()[None, None]
    if dilate_px > 0:
        size = 2 * dilate_px + 1
        changed = torch.nn.functional.max_pool2d(changed, size, stride=1, padding=dilate_px)
    return changed[0, 0].bool().numpy()


def view_metrics(prediction: ArrayLike, target: ArrayLike, edited_mask: np.ndarray,
                 reference: ArrayLike | None = None) -> dict[str, float]:
    """Per-view scores against the ground-truth edited ``target``; with ``reference`` (the no-edit reconstruction's
    render of this view) also the PSNR to it in the unedited region (how much the method changed what it should keep).
    """
    unedited = ~edited_mask
    scores = {
        "psnr": psnr(prediction, target),
        "ssim": ssim(prediction, target),
        "psnr_edited_region": psnr(prediction, target, edited_mask),
        "psnr_unedited_region": psnr(prediction, target, unedited),
        "ssim_unedited_region": ssim(prediction, target, unedited),
    }
    if reference is not None:
        scores["psnr_unedited_vs_no_edit_render"] = psnr(prediction, reference, unedited)
    return scores


def mean_metrics(per_view: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each score over views (NaNs, e.g. views without an edited region, skipped)."""
    keys = per_view[0].keys() if per_view else []
    return {key: float(np.nanmean([view[key] for view in per_view])) for key in keys}
