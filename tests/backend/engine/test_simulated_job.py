"""A job with the SIMULATED editor (``editor.source = simulated``): the scene carries a target image per view
(``target_file_path``), the editor blends each render toward it view-inconsistently, and Iterative Dataset Update
turns those inconsistent 2D edits into a NeRF that renders the edit. CPU, tiny NeRF, tiny scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.config import DatasetUpdateConfig, EditJobConfig, EditorConfig, OutputConfig, tiny_nerf_config
from backend.editing.loaders import load_editor
from backend.editing.simulated import SimulatedInstructEditor, SimulatedTargetsMissing
from backend.engine import EditEngine
from backend.scene import SceneError, load_scene
from tests.helpers.scenes import DEFAULT_SPHERES, Sphere, make_tiny_scene

pytestmark = pytest.mark.timeout(900)

#: the edit: the big red sphere turns blue
TARGET_SPHERES = (Sphere(DEFAULT_SPHERES[0].center, DEFAULT_SPHERES[0].radius, (0.1, 0.3, 0.95)), *DEFAULT_SPHERES[1:])


def load_float(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(((a - b) ** 2)[mask].mean(), 1e-12)))


def test_the_scene_names_each_views_target_and_the_editor_is_built_from_it(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24, target_spheres=TARGET_SPHERES)
    loaded = load_scene(scene.path)
    assert loaded.has_targets and loaded.frames[2].target_path == (scene.path / "targets/frame_00002.png").resolve()
    editor = load_editor("simulated", scene=loaded)
    assert isinstance(editor, SimulatedInstructEditor)
    # it recognises view 2 by its original image and, at the top of the schedule, returns that view's target
    original = torch.from_numpy(scene.images[2]).permute(2, 0, 1)[None].float() / 255
    assert editor.view_of(original[0]) == 2
    editor.config.max_shift_px = editor.config.hue_deg = editor.config.brightness = editor.config.blob_amplitude = 0.0
    edited = editor.edit(torch.zeros_like(original), original, "x", timestep=1000)
    target = torch.from_numpy(np.array(Image.open(scene.path / "targets/frame_00002.png"))).permute(2, 0, 1) / 255
    assert torch.allclose(edited[0], target.float(), atol=1e-5)


def test_without_targets_the_simulated_editor_says_what_the_scene_lacks(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=3, size=16)
    with pytest.raises(SimulatedTargetsMissing, match="target_file_path.*3 of 3 views"):
        load_editor("simulated", scene=load_scene(scene.path))


def test_a_target_of_the_wrong_size_is_a_bad_scene_naming_the_frame(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=3, size=16, target_spheres=TARGET_SPHERES)
    Image.new("RGB", (8, 8)).save(scene.path / "targets/frame_00001.png")
    with pytest.raises(SceneError) as info:
        load_scene(scene.path)
    assert info.value.field.startswith("frames[1].target_file_path")


@pytest.mark.slow
def test_iterative_dataset_update_with_the_simulated_editor_renders_the_edit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    scene = make_tiny_scene(tmp_path / "scene", num_views=8, size=32, target_spheres=TARGET_SPHERES)
    config = EditJobConfig(
        prompt="make the red sphere blue", device="cpu", editor=EditorConfig(source="simulated"),
        nerf=tiny_nerf_config(reconstruction_steps=300),
        update=DatasetUpdateConfig(total_steps=400, edit_every_n_steps=4),
        output=OutputConfig(checkpoint_every=1000, snapshot_every=1_000_000, snapshot_views=8, export_geometry=False))
    engine = EditEngine(config)
    result = engine.run(scene.path, tmp_path / "job")
    assert result.status == "done", result.error
    editor = engine.editor
    assert isinstance(editor, SimulatedInstructEditor)
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    final = tmp_path / "job" / manifest["final_snapshot"] / "views"
    to_target, to_original, singles_to_target = [], [], []
    generator = torch.Generator().manual_seed(0)
    for index in range(8):
        name = f"images/frame_{index:05d}.png"
        original, target = load_float(scene.path / name), load_float(scene.path / name.replace("images", "targets"))
        region = np.abs(target - original).mean(axis=-1) > 0.1
        render = load_float(final / Path(name).name)  # snapshot renders keep the file name
        to_target.append(psnr(render, target, region))
        to_original.append(psnr(render, original, region))
        # the 2D baseline: the same editor applied once to the photo, at the top of the noise range
        photo = torch.from_numpy(scene.images[index]).permute(2, 0, 1)[None].float() / 255
        single = editor.edit(photo, photo, "x", timestep=980, generator=generator)[0].permute(1, 2, 0).numpy()
        singles_to_target.append(psnr(single.astype(np.float64), target, region))
    # where the edit acts, the NeRF now looks like the target, not like the original
    assert np.mean(to_target) > np.mean(to_original) + 3.0, (to_target, to_original)
    # and it is closer to the target there than the view-inconsistent single 2D edits
    assert np.mean(to_target) > np.mean(singles_to_target), (to_target, singles_to_target)
