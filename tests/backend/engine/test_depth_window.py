"""The DS-NeRF depth window narrows over the reconstruction (exact depth from Blender pins surfaces only with a narrow
window, and samples far from the surface get a gradient only from a wide one): step by step in training, and where a
checkpoint left it when a job resumes."""

from __future__ import annotations

import math

import pytest

from backend.config import EXACT_DEPTH_SIGMA, EXACT_DEPTH_SIGMA_START, EditJobConfig, tiny_nerf_config
from backend.nerf.setup import build_pipeline
from backend.nerf.trainer import NerfTrainer
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.timeout(600)]


def config(steps: int, **nerf) -> EditJobConfig:
    return EditJobConfig(prompt="unused", device="cpu", nerf=tiny_nerf_config(
        reconstruction_steps=steps, use_depth=True, depth_loss_mult=0.05, **nerf))


def trainer_of(config: EditJobConfig, scene) -> NerfTrainer:
    return NerfTrainer(*build_pipeline(config, scene.path, "cpu"))


def test_the_window_narrows_geometrically_while_training_and_a_resumed_trainer_continues_where_it_was(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=16, depth=True)
    steps = 8
    narrowing = config(steps, depth_sigma=EXACT_DEPTH_SIGMA, depth_sigma_start=EXACT_DEPTH_SIGMA_START)
    trainer = trainer_of(narrowing, scene)
    seen = []
    for _ in range(steps + 2):
        losses = trainer.train_step()
        assert math.isfinite(losses["depth_loss"]) and losses["depth_loss"] > 0
        seen.append(trainer.model.depth_sigma_now)
    # the value used by step k (set before it): start * (end / start) ** (k / steps), then the end value
    ratio = EXACT_DEPTH_SIGMA / EXACT_DEPTH_SIGMA_START
    expected = [EXACT_DEPTH_SIGMA_START * ratio ** (k / steps) for k in range(steps)] + [EXACT_DEPTH_SIGMA] * 2
    assert seen == pytest.approx(expected, rel=1e-9)
    assert seen[steps // 2] == pytest.approx(math.sqrt(EXACT_DEPTH_SIGMA * EXACT_DEPTH_SIGMA_START))

    half = 3
    midway = trainer_of(narrowing, scene)
    for _ in range(half):
        midway.train_step()
    midway.save_checkpoint(tmp_path / "step.ckpt")
    resumed = trainer_of(narrowing, scene)
    assert resumed.model.depth_sigma_now == pytest.approx(EXACT_DEPTH_SIGMA_START)  # a new model starts wide
    resumed.load_checkpoint(tmp_path / "step.ckpt")
    assert resumed.step == half
    assert resumed.model.depth_sigma_now == pytest.approx(expected[half - 1])  # as saved: after step 2
    resumed.train_step()
    assert resumed.model.depth_sigma_now == pytest.approx(expected[half])  # step 3 trained with step 3's window


def test_without_a_start_the_window_stays_what_is_set(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=16, depth=True)
    trainer = trainer_of(config(4, depth_sigma=0.02), scene)
    for _ in range(3):
        trainer.train_step()
        assert trainer.model.depth_sigma_now == 0.02
