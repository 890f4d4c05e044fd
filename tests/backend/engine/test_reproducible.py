"""A job's seed makes it reproducible: the same job run twice, from different states of the process's random number
generators, trains the same NeRF and writes the same edited images.

nerfstudio's image cache orders its rows with Python's ``random`` and rays are drawn by row, so before the engine
seeded it, two runs of one tiny job trained differently (one of them once into a NeRF with nothing opaque to export).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from backend.config import DatasetUpdateConfig, EditJobConfig, EditorConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.timeout(600)]


def run(config: EditJobConfig, scene: Path, job_dir: Path, process_seed: int) -> tuple[dict, dict[str, bytes]]:
    """The job's final NeRF weights and edited images, run after seeding the process's generators with
    ``process_seed`` (what other code in a long-running server may have left behind)."""
    random.seed(process_seed)
    torch.manual_seed(process_seed)
    result = EditEngine(config).run(scene, job_dir)
    assert result.status == "done", result.error
    state = torch.load(job_dir / "checkpoints" / f"step-{result.steps:09d}.ckpt", weights_only=False)
    return state["pipeline"], {path.name: path.read_bytes() for path in (job_dir / "edited").rglob("*.png")}


def test_same_seed_same_job_whatever_the_process_state(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, size=24)
    config = EditJobConfig(prompt="swap", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=30),
                           update=DatasetUpdateConfig(total_steps=8, edit_every_n_steps=4, ddim_steps=2),
                           editor=EditorConfig(source="tiny"),  # its edits depend on the render
                           output=OutputConfig(checkpoint_every=1000, snapshot_every=0, export_geometry=False))
    threads = torch.get_num_threads()
    # one intra-op thread, as the test servers run: the CPU kernels' parallel reductions are reproducible only for a
    # given thread count
    torch.set_num_threads(1)
    try:
        (weights_a, edited_a), (weights_b, edited_b) = [
            run(config, scene.path, tmp_path / f"job{index}", process_seed)
            for index, process_seed in enumerate((1, 12345))]
    finally:
        torch.set_num_threads(threads)
    assert edited_a.keys() == edited_b.keys() and len(edited_a) == 2
    assert [name for name in edited_a if edited_a[name] != edited_b[name]] == []
    assert weights_a.keys() == weights_b.keys()
    assert [key for key in weights_a if not torch.equal(weights_a[key], weights_b[key])] == []
