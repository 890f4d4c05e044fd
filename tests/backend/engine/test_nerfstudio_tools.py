"""nerfstudio's own tools open a job directory: ``eval_setup(<job>/config.yml)`` (what ``ns-viewer --load-config``
and ``ns-export --load-config`` call) builds stock nerfacto, loads the job's newest checkpoint with torch's
weights-only default, and renders what the job's NeRF renders."""

from __future__ import annotations

import pytest
import torch

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.timeout(600)]


def test_eval_setup_opens_a_job_and_renders_its_nerf(tmp_path, random_alexnet_torch_home):
    from nerfstudio.models.nerfacto import NerfactoModel
    from nerfstudio.utils.eval_utils import eval_setup

    from backend.nerf.setup import build_pipeline
    from backend.nerf.trainer import NerfTrainer

    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=24)
    config = EditJobConfig(prompt="swap", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=40),
                           update=DatasetUpdateConfig(total_steps=4, edit_every_n_steps=4),
                           output=OutputConfig(checkpoint_every=1000, snapshot_every=0, export_geometry=False))
    job = tmp_path / "job"
    assert EditEngine(config, ChannelSwapEditor()).run(scene.path, job).status == "done"

    loaded, pipeline, checkpoint, step = eval_setup(job / "config.yml", test_mode="inference")
    assert type(pipeline.model) is NerfactoModel and step == 44 and checkpoint.parent == job / "checkpoints"

    ours, optimizers = build_pipeline(config, job / "input", "cpu")
    trainer = NerfTrainer(ours, optimizers)
    trainer.load_checkpoint(checkpoint, weights_only=True)
    # nerfstudio's nerfacto renders a loaded model with its proposal weights unannealed (its update_to_step does
    # not set them; the job's own model does): compare like with like
    trainer.model.proposal_sampler.set_anneal(1.0)
    camera = trainer.training_camera(0)
    with torch.no_grad():
        theirs = pipeline.model.get_outputs_for_camera(camera.to(pipeline.device))["rgb"]
    mine = trainer.render(camera)
    assert theirs.shape == mine.shape == (24, 24, 3)
    assert float((theirs - mine).abs().max()) < 1e-4
