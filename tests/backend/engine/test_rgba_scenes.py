"""What alpha means for an edit: an RGBA capture's alpha is its silhouette. The editor sees and returns RGB; an edit
replaces a view's colour and keeps its alpha, so it can never change the silhouette (nerfstudio composites the
target over the training background with that alpha)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from backend.config import EditJobConfig, tiny_nerf_config
from backend.nerf.setup import build_pipeline
from tests.helpers.scenes import make_tiny_scene

pytestmark = pytest.mark.timeout(300)


def test_an_edit_replaces_colour_and_keeps_the_views_alpha(tmp_path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    for index, image in enumerate(scene.images):  # alpha: the objects (whatever differs from the background)
        background = image[0, 0].astype(int)
        alpha = (np.abs(image.astype(int) - background).max(axis=-1) > 8).astype(np.uint8) * 255
        Image.fromarray(np.dstack([image, alpha])).save(scene.path / f"images/frame_{index:05d}.png")
    config = EditJobConfig(prompt="x", device="cpu", nerf=tiny_nerf_config())
    pipeline, _ = build_pipeline(config, scene.path, "cpu")
    datamanager = pipeline.datamanager
    batch = datamanager.image_batch["image"]
    assert batch.shape[-1] == 4  # nerfstudio keeps the alpha channel
    row = datamanager.position_of[0]
    alpha_before = batch[row, ..., 3].clone()
    assert 0 < alpha_before.mean() < 1  # a real silhouette: some pixels in, some out
    assert datamanager.original_image(0).shape[-1] == 3  # the editor's condition is RGB

    edited = torch.zeros(24, 24, 3)
    edited[..., 2] = 1.0  # the edit paints everything blue, outside the silhouette too
    datamanager.set_image(0, edited)
    assert torch.equal(batch[row, ..., 3], alpha_before)  # the silhouette is the capture's, untouched
    assert torch.equal(datamanager.current_image(0), edited)
