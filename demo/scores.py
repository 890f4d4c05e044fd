"""How close the demo's images are to the intended edit: PSNR against Blender's render of the intended edit (the
simulated editor's target) and against the original scene, over the whole image and over the edited region (the
pixels where those two renders differ). numpy only; runs in the report's process.

Read the edited-region numbers: a result that took the edit scores higher against the target than against the
original there; the rest of the image is the same in both references and only says how good the reconstruction is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

MAX_PSNR = 100.0
"""Reported for identical images (JSON has no infinity)."""
EDITED_REGION_THRESHOLD = 0.1
"""A pixel belongs to the edited region when the target and the original differ by more than this (mean of the
absolute RGB differences, colours in [0, 1])."""


def psnr(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (data range 1) of ``H W 3`` float images, over all pixels or those where ``mask`` is true."""
    error = (prediction.astype(np.float64) - reference.astype(np.float64)) ** 2
    selected = error[mask] if mask is not None else error.reshape(-1, error.shape[-1])
    mse = float(selected.mean()) if selected.size else 0.0
    return MAX_PSNR if mse <= 0 else min(MAX_PSNR, 10 * math.log10(1.0 / mse))


def edited_region(target: np.ndarray, original: np.ndarray) -> np.ndarray:
    """``H W`` bool: where the intended edit changes the image."""
    return np.abs(target.astype(np.float64) - original.astype(np.float64)).mean(axis=-1) > EDITED_REGION_THRESHOLD


def score(triples: Sequence[Sequence[str]], load: Callable[[Path], np.ndarray], base: Path) -> dict[str, float | int]:
    """Mean PSNRs of ``[image, target, original]`` file triples (relative to ``base``); the image is resized to the
    references' size by nearest pixel if it differs (edited images keep the upload's size, so it rarely does)."""
    totals = {"vs_target_db": 0.0, "vs_original_db": 0.0, "edited_region_vs_target_db": 0.0,
              "edited_region_vs_original_db": 0.0}
    for image_name, target_name, original_name in triples:
        target, original = (load(base / name).astype(np.float64) / 255 for name in (target_name, original_name))
        image = _resized(load(base / image_name), target.shape[:2]).astype(np.float64) / 255
        region = edited_region(target, original)
        totals["vs_target_db"] += psnr(image, target)
        totals["vs_original_db"] += psnr(image, original)
        totals["edited_region_vs_target_db"] += psnr(image, target, region)
        totals["edited_region_vs_original_db"] += psnr(image, original, region)
    count = len(triples)
    return {**{name: round(value / count, 2) if count else float("nan") for name, value in totals.items()},
            "views": count}


def _resized(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if image.shape[:2] == tuple(shape):
        return image
    rows = np.arange(shape[0]) * image.shape[0] // shape[0]
    cols = np.arange(shape[1]) * image.shape[1] // shape[1]
    return image[rows][:, cols]
