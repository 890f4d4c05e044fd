"""Edits that use what Blender knows (issue 13), on real tiny jobs: an edit mask keeps every edited image's pixels
outside the selected object exactly as they were; depth images add nerfstudio's depth loss; the export stays inside
the edit region; a UV-textured mesh lands in the scene's frame."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.job.types import JobCallbacks, Progress
from backend.nerf.local_edit import crop_box, edit_locally, soft_mask
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.timeout(900)]


def test_soft_mask_grows_then_feathers_and_local_edits_keep_the_rest():
    mask = torch.zeros(80, 80)
    mask[18:22, 18:22] = 1
    soft = soft_mask(mask, dilation_px=2, feather_px=4)
    assert float(soft[20, 20]) == 1.0 and float(soft[0, 0]) == 0.0
    assert torch.all(soft[16:24, 16:24] == 1)  # the mask grown by 2 px is kept whole
    assert float(soft[20, 14]) > 0  # then softened further out
    ramp = soft[20, 8:21]
    assert torch.all(ramp[1:] >= ramp[:-1]) and bool(((ramp > 0) & (ramp < 1)).any())  # a ramp, not a step
    assert crop_box(soft) is not None  # a small object: the editor works on a crop
    render, original = torch.rand(80, 80, 3), torch.rand(80, 80, 3)
    seen: list[tuple[int, int]] = []

    def swap(render_crop: torch.Tensor, original_crop: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(render_crop.shape[:2]))
        return original_crop.flip(-1)

    edited = edit_locally(swap, render, original, soft)
    outside = soft == 0
    assert torch.equal(edited[outside], original[outside])  # untouched, bit for bit
    assert torch.allclose(edited[20, 20], original[20, 20].flip(-1))  # the edit, where the mask is 1
    assert seen and seen[0][0] < 80 and seen[0][0] == seen[0][1]  # a square crop, not the whole view
    big = torch.ones(80, 80)
    assert crop_box(big) is None  # a large object: no crop
    empty = edit_locally(swap, render, original, torch.zeros(80, 80))
    assert torch.equal(empty, original) and len(seen) == 1  # nothing selected in view: no edit at all


def job_config(**output) -> EditJobConfig:
    return EditJobConfig(
        prompt="swap red and blue", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=300),
        update=DatasetUpdateConfig(total_steps=40, edit_every_n_steps=4),
        output=OutputConfig(**{"checkpoint_every": 1000, "snapshot_every": 0, "export_num_points": 4000,
                               "poisson_depth": 6, **output}))


@pytest.mark.slow
def test_masked_depth_supervised_job_edits_only_the_selected_sphere_and_exports_inside_its_region(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32, depth=True, edit_mask_of=0)
    center = scene.center + scene.scale * np.array(scene.spheres[0].center)
    radius = scene.scale * scene.spheres[0].radius
    margin = 0.15 * radius
    config = job_config(region_min=(center - radius - margin).tolist(), region_max=(center + radius + margin).tolist(),
                        textured_mesh=True, texture_size=64, max_faces=400)
    progress: list[Progress] = []
    logs: list[str] = []
    result = EditEngine(config, ChannelSwapEditor()).run(scene.path, tmp_path / "job", JobCallbacks(
        on_progress=progress.append, on_log=logs.append))
    assert result.status == "done", result.error
    assert any(line.startswith("depth supervision") for line in logs)
    assert any(line.startswith("local edits: 10 of 10 views") for line in logs)
    training = [p for p in progress if p.phase in ("reconstructing", "editing")]
    assert all("depth_loss" in p.losses and np.isfinite(p.losses["depth_loss"]) for p in training)

    # every edited image: the original outside the dilated, feathered mask, the edit (red <-> blue) inside it
    for path in sorted((tmp_path / "job" / "edited" / "images").glob("*.png")):
        edited = np.asarray(Image.open(path).convert("RGB")).astype(int)
        original = np.asarray(Image.open(scene.path / "images" / path.name).convert("RGB")).astype(int)
        mask = torch.from_numpy(np.asarray(Image.open(scene.path / "edit_masks" / path.name), np.float32) / 255)
        soft = soft_mask(mask, config.update.mask_dilation_px, config.update.mask_feather_px).numpy()
        assert np.array_equal(edited[soft == 0], original[soft == 0]), path.name
        core = soft == 1
        assert core.any() and np.abs(edited[core] - original[core][:, ::-1]).max() <= 1, path.name

    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    from plyfile import PlyData

    cloud = PlyData.read(str(tmp_path / "job" / manifest["point_cloud"]))["vertex"]
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)
    low, high = np.asarray(config.output.region_min), np.asarray(config.output.region_max)
    assert len(points) > 100 and np.all((points >= low - 1e-4) & (points <= high + 1e-4))  # only the region
    mesh = PlyData.read(str(tmp_path / "job" / manifest["mesh"]))
    vertices = np.stack([mesh["vertex"][c] for c in "xyz"], 1)
    assert np.all((vertices >= low - 1e-4) & (vertices <= high + 1e-4))
    assert 0 < len(mesh["face"]) <= 400  # decimated

    obj = tmp_path / "job" / manifest["textured_mesh"]
    assert [Path(p).name for p in manifest["textured_mesh_files"]] == ["material_0.mtl", "material_0.png"]
    text = obj.read_text().splitlines()
    assert "mtllib material_0.mtl" in text and any(line.startswith("vt ") for line in text)
    obj_vertices = np.array([[float(v) for v in line.split()[1:4]] for line in text if line.startswith("v ")])
    assert np.all(np.linalg.norm(obj_vertices - center, axis=1) < 2 * radius)  # in the scene's frame, on the sphere
    texture = np.asarray(Image.open(obj.parent / "material_0.png"))
    assert texture.shape[:2] == (64, 64) and texture.std() > 1


@pytest.mark.slow
def test_without_depth_images_or_with_use_depth_off_there_is_no_depth_loss(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32, depth=True)
    config = job_config(export_geometry=False)
    config.nerf.reconstruction_steps, config.update.total_steps = 20, 4
    config.nerf.use_depth = False
    progress: list[Progress] = []
    result = EditEngine(config, ChannelSwapEditor()).run(scene.path, tmp_path / "job",
                                                          JobCallbacks(on_progress=progress.append))
    assert result.status == "done", result.error
    assert progress and not any("depth_loss" in p.losses for p in progress)
    written = json.loads((tmp_path / "job" / "input" / "transforms.json").read_text())
    assert not any("depth_file_path" in frame for frame in written["frames"])  # nerfstudio never reads them


@pytest.mark.slow
def test_depth_while_editing_off_supervises_the_reconstruction_only_also_after_a_resume(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32, depth=True)
    config = job_config(export_geometry=False, checkpoint_every=2)
    config.nerf.reconstruction_steps, config.update.total_steps = 12, 12
    config.nerf.depth_while_editing = False
    progress: list[Progress] = []
    stop = threading.Event()

    def on_progress(event: Progress) -> None:
        progress.append(event)
        if event.phase == "editing" and event.phase_step == 6:
            stop.set()

    first = EditEngine(config, ChannelSwapEditor(), progress_interval_s=0).run(
        scene.path, tmp_path / "job", JobCallbacks(on_progress=on_progress), stop)
    assert first.status == "cancelled", first.error
    resumed = EditEngine(config, ChannelSwapEditor(), progress_interval_s=0).run(
        scene.path, tmp_path / "job", JobCallbacks(on_progress=progress.append))
    assert resumed.status == "done", resumed.error
    reconstructing = [p for p in progress if p.phase == "reconstructing"]
    editing = [p for p in progress if p.phase == "editing"]
    assert reconstructing and all(p.losses.get("depth_loss", 0) > 0 for p in reconstructing)
    assert {p.phase_step for p in editing} >= set(range(1, 13))  # both runs' editing steps were seen
    assert not any("depth_loss" in p.losses for p in editing)  # before the stop and after the resume
