"""A share of every batch is drawn from inside the edit masks (an object that fills 2 % of its views gets more than
2 % of the rays), and those rays carry the pixels, depths and cameras they were drawn at."""

from __future__ import annotations

import pytest
import torch

from backend.config import EditJobConfig, tiny_nerf_config
from backend.nerf.setup import build_pipeline
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.timeout(600)]


def test_a_focused_batch_draws_its_share_inside_the_masks_with_the_right_pixels(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=16, depth=True)
    config = EditJobConfig(prompt="unused", device="cpu", nerf=tiny_nerf_config(rays_per_batch=400, use_depth=True))
    datamanager = build_pipeline(config, scene.path, "cpu")[0].datamanager
    # a 2 x 2 corner of views 3 and 7: 8 of 2,560 pixels (0.3 %)
    masks = {view: torch.zeros(16, 16) for view in (3, 7)}
    for mask in masks.values():
        mask[:2, :2] = 1
    assert datamanager.focus(masks, 0.25) == 8

    torch.manual_seed(0)
    _, batch = datamanager.next_train(0)
    indices = batch["indices"]
    assert len(indices) == 400
    focused = indices[-100:]
    assert set(focused[:, 0].tolist()) <= {3, 7} and (focused[:, 1:] < 2).all()
    uniform = indices[:-100]
    inside = ((uniform[:, 0] == 3) | (uniform[:, 0] == 7)) & (uniform[:, 1] < 2) & (uniform[:, 2] < 2)
    assert int(inside.sum()) < 20  # the rest stays uniform: about 1 of 300 inside
    # each ray carries its own pixel's colour and depth (indices name the camera, rows are in dataloader order)
    images, depths = datamanager.image_batch["image"], datamanager.image_batch["depth_image"]
    for ray, (camera, y, x) in enumerate(indices.tolist()):
        row = datamanager.position_of[camera]
        assert torch.equal(batch["image"][ray], images[row, y, x])
        assert torch.equal(batch["depth_image"][ray], depths[row, y, x])

    datamanager.focus({}, 0.25)  # no masks: uniform again
    _, batch = datamanager.next_train(1)
    assert not (batch["indices"][-100:, 1:] < 2).all()
