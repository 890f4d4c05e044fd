"""The consistency benchmark's SIMULATED editor: SDEdit-like blend, view recognition, t-dependent inconsistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.editing.base import ImageEditor
from backend.editing.simulated import SimulatedInstructEditor, SimulationConfig, hue_rotation

pytestmark = pytest.mark.timeout(120)

CONSISTENT = SimulationConfig(max_shift_px=0.0, hue_deg=0.0, brightness=0.0, blobs=0)
"""No inconsistencies: the result is exactly the blend."""


def random_views(count: int = 4, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Originals and targets as 8-bit-representable images (as read from PNGs)."""
    rng = np.random.default_rng(seed)
    originals = torch.from_numpy(rng.integers(0, 256, (count, 3, size, size))).float() / 255
    targets = torch.from_numpy(rng.integers(0, 256, (count, 3, size, size))).float() / 255
    return originals, targets


def edit(editor: SimulatedInstructEditor, render: torch.Tensor, original: torch.Tensor, t: int, seed: int = 0):
    return editor.edit(render, original, editor.encode_instruction("x"), timestep=t, guidance_scale=7.5,
                       image_guidance_scale=1.5, ddim_steps=20, generator=torch.Generator().manual_seed(seed))


def test_is_an_image_editor() -> None:
    originals, targets = random_views()
    assert isinstance(SimulatedInstructEditor(originals, targets), ImageEditor)


@pytest.mark.parametrize("t", [0, 120, 500, 979, 999])
def test_without_inconsistencies_the_result_is_the_sdedit_blend(t: int) -> None:
    originals, targets = random_views()
    editor = SimulatedInstructEditor(originals, targets, CONSISTENT)
    render = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    result = edit(editor, render, originals[2:3], t)
    s = min(1.0, t / (0.98 * 1000))
    alpha = s**0.5
    torch.testing.assert_close(result, (1 - alpha) * render + alpha * targets[2:3], atol=1e-5, rtol=0)


def test_alpha_grows_with_the_noise_level_and_reaches_the_full_edit() -> None:
    editor = SimulatedInstructEditor(*random_views())
    alphas = [editor.alpha(t) for t in range(0, 1000, 50)]
    assert all(a < b for a, b in zip(alphas, alphas[1:-1]))
    assert editor.alpha(0) == 0.0 and editor.alpha(980) == 1.0 and editor.alpha(999) == 1.0


def test_each_view_is_recognised_from_its_original_and_edited_towards_its_own_target() -> None:
    originals, targets = random_views(count=5)
    editor = SimulatedInstructEditor(originals, targets, CONSISTENT)
    # a batch in a different order than the editor knows them, at the full-edit noise level
    order = [3, 0, 4]
    result = edit(editor, torch.zeros(3, 3, 24, 24), originals[order], 990)
    torch.testing.assert_close(result, targets[order], atol=1e-5, rtol=0)
    assert editor.timesteps == [990, 990, 990]


def test_a_slightly_different_original_still_matches_its_nearest_view() -> None:
    originals, targets = random_views()
    editor = SimulatedInstructEditor(originals, targets, CONSISTENT)
    perturbed = (originals[1:2] + 0.002 * torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(1)))
    assert editor.view_of(perturbed[0]) == 1
    torch.testing.assert_close(edit(editor, originals[1:2], perturbed, 990), targets[1:2], atol=1e-5, rtol=0)


def test_an_unknown_original_is_an_error_naming_the_argument() -> None:
    originals, targets = random_views()
    editor = SimulatedInstructEditor(originals, targets)
    stranger = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(9))
    with pytest.raises(ValueError, match="original"):
        edit(editor, stranger, stranger, 500)
    with pytest.raises(ValueError, match="original"):
        edit(editor, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), 500)


def test_inconsistency_grows_with_the_noise_level() -> None:
    originals, targets = random_views(count=2, size=32)
    noisy = SimulatedInstructEditor(originals, targets)
    clean = SimulatedInstructEditor(originals, targets, CONSISTENT)
    render = originals[:1]

    def mean_deviation(t: int) -> float:
        reference = edit(clean, render, originals[:1], t)
        return float(np.mean([(edit(noisy, render, originals[:1], t, seed) - reference).abs().mean()
                              for seed in range(8)]))

    low, mid, high = mean_deviation(40), mean_deviation(400), mean_deviation(950)
    assert low < mid < high
    assert high > 0.02  # a clearly visible inconsistency at high noise


def test_edits_are_reproducible_per_generator_and_differ_between_calls() -> None:
    originals, targets = random_views(count=2, size=32)
    editor = SimulatedInstructEditor(originals, targets)
    first = edit(editor, originals[:1], originals[:1], 700, seed=3)
    again = edit(editor, originals[:1], originals[:1], 700, seed=3)
    other = edit(editor, originals[:1], originals[:1], 700, seed=4)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert float((first - other).abs().mean()) > 1e-3
    assert first.shape == (1, 3, 32, 32) and float(first.min()) >= 0.0 and float(first.max()) <= 1.0


def test_hue_rotation_keeps_grey_and_preserves_length() -> None:
    rotation = hue_rotation(torch.tensor(0.7))
    grey = torch.tensor([0.4, 0.4, 0.4])
    torch.testing.assert_close(rotation @ grey, grey, atol=1e-5, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0])
    turned = rotation @ red
    assert not torch.allclose(turned, red, atol=1e-2)
    torch.testing.assert_close(turned.norm(), red.norm(), atol=1e-5, rtol=0)


def test_mismatched_inputs_are_rejected() -> None:
    originals, targets = random_views()
    with pytest.raises(ValueError, match="originals and targets"):
        SimulatedInstructEditor(originals, targets[:2])
    editor = SimulatedInstructEditor(originals, targets)
    with pytest.raises(ValueError, match="timestep"):
        edit(editor, originals[:1], originals[:1], 1001)
