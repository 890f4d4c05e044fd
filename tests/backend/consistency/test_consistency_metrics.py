"""Metrics of the consistency benchmark: PSNR/SSIM over regions and the edited-region mask."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.consistency import metrics

pytestmark = pytest.mark.timeout(60)


def image(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


def test_psnr_follows_the_mean_squared_error() -> None:
    a = image(0)
    b = np.clip(a + np.random.default_rng(1).normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert metrics.psnr(a, b) == pytest.approx(-10 * math.log10(mse), abs=1e-3)
    assert metrics.psnr(a, a) == metrics.MAX_PSNR


def test_masked_psnr_only_counts_the_masked_pixels() -> None:
    a = image(0)
    b = a.copy()
    b[:, :16] = 1 - b[:, :16]  # wrong left half only
    left = np.zeros((32, 32), bool)
    left[:, :16] = True
    assert metrics.psnr(a, b, ~left) == metrics.MAX_PSNR
    assert metrics.psnr(a, b, left) < metrics.psnr(a, b) < metrics.MAX_PSNR
    assert math.isnan(metrics.psnr(a, b, np.zeros((32, 32), bool)))
    with pytest.raises(ValueError, match="mask"):
        metrics.psnr(a, b, np.ones((8, 8), bool))


def test_ssim_is_one_for_identical_images_and_drops_with_noise_in_the_noisy_region() -> None:
    a = image(2, 48)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    b = a.copy()
    b[:, 24:] = np.clip(b[:, 24:] + np.random.default_rng(3).normal(0, 0.2, b[:, 24:].shape), 0, 1)
    right = np.zeros((48, 48), bool)
    right[:, 30:] = True  # away from the boundary, where the window sees only noisy pixels
    left = np.zeros((48, 48), bool)
    left[:, :18] = True
    assert metrics.ssim(a, b, left) == pytest.approx(1.0, abs=1e-4)
    assert metrics.ssim(a, b, right) < metrics.ssim(a, b) < 1.0


def test_edited_region_mask_covers_the_changed_pixels_plus_a_margin() -> None:
    original = np.full((32, 32, 3), 0.5, np.float32)
    edited = original.copy()
    edited[10:14, 20:25] = (0.1, 0.2, 0.9)
    edited[0, 0] += 0.01  # render noise below the threshold is not an edit
    mask = metrics.edited_region_mask(original, edited, threshold=0.04, dilate_px=2)
    expected = np.zeros((32, 32), bool)
    expected[8:16, 18:27] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(metrics.edited_region_mask(original, edited, dilate_px=0)[10:14, 20:25], True)


def test_view_metrics_and_their_mean() -> None:
    target = image(4)
    prediction = target.copy()
    mask = np.zeros((32, 32), bool)
    mask[:8] = True
    prediction[:8] = 0.0  # wrong only inside the edited region
    scores = metrics.view_metrics(prediction, target, mask, reference=target)
    assert scores["psnr_unedited_region"] == metrics.MAX_PSNR
    assert scores["psnr_unedited_vs_no_edit_render"] == metrics.MAX_PSNR
    assert scores["psnr_edited_region"] < scores["psnr"] < metrics.MAX_PSNR
    mean = metrics.mean_metrics([{"psnr": 10.0, "x": float("nan")}, {"psnr": 20.0, "x": 3.0}])
    assert mean == {"psnr": 15.0, "x": 3.0}
