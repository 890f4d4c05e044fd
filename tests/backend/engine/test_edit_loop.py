"""The Iterative Dataset Update loop really runs on nerfacto (CPU, tiny NeRF, tiny scene).

One job is run once per module with an editor that records its inputs and returns the original image with red and
blue swapped (a consistent edit the NeRF can converge to); the tests below check what that job did.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.job.snapshots import SnapshotStore
from backend.job.types import JobCallbacks, JobResult, PreviewCamera, Progress
from backend.nerf.dataset_update import EditSchedule
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import TinyScene, make_tiny_scene

# Generous: ~1 min on an idle 2-core machine, several times that when other jobs share the CPU.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NUM_VIEWS = 10
RECONSTRUCTION_STEPS = 300
EDIT_STEPS = 100
EDIT_RATE = 4


def job_config(**update) -> EditJobConfig:
    return EditJobConfig(
        prompt="swap red and blue",
        device="cpu",
        nerf=tiny_nerf_config(reconstruction_steps=RECONSTRUCTION_STEPS),
        update=DatasetUpdateConfig(**{"total_steps": EDIT_STEPS, "edit_every_n_steps": EDIT_RATE, **update}),
        output=OutputConfig(checkpoint_every=50, snapshot_every=50, snapshot_views=3, export_num_points=8000,
                            poisson_depth=6),
    )


@dataclass
class Recorder:
    states: list[str] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    previews: dict[str, np.ndarray] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    results: list[JobResult] = field(default_factory=list)

    def callbacks(self) -> JobCallbacks:
        return JobCallbacks(on_state=lambda state, detail: self.states.append(state),
                            on_progress=self.progress.append,
                            on_preview=self.previews.__setitem__, on_log=self.logs.append,
                            on_result=self.results.append)


@dataclass
class FinishedJob:
    scene: TinyScene
    job_dir: Path
    result: JobResult
    editor: ChannelSwapEditor
    recorder: Recorder
    scene_hashes: dict[str, str]


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def load_float(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory) -> FinishedJob:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("edit_loop")
    scene = make_tiny_scene(root / "scene", num_views=NUM_VIEWS, size=32)
    before = hashes(scene.path)
    editor, recorder = ChannelSwapEditor(), Recorder()
    engine = EditEngine(job_config(), editor, preview_interval_s=0.0, progress_interval_s=0.0)
    # A viewport preview requested from another thread, in the INPUT frame: a camera looking at the scene centre.
    from tests.helpers.scenes import look_at

    viewport = look_at(scene.center + np.array([0.0, -4.0, 1.5]), scene.center)
    threading.Thread(target=engine.request_preview,
                     args=(PreviewCamera(viewport, 40.0, 40.0, 16.0, 12.0, 32, 24, name="viewport"),)).start()
    result = engine.run(scene.path, root / "job", recorder.callbacks())
    return FinishedJob(scene, root / "job", result, editor, recorder, before)


def test_job_finishes_and_reports_states_in_order(finished_job):
    assert finished_job.result.status == "done", finished_job.result.error
    assert finished_job.recorder.states == ["preparing", "reconstructing", "editing", "exporting", "done"]
    assert finished_job.recorder.results == [finished_job.result]
    state = json.loads((finished_job.job_dir / "state.json").read_text())
    assert state["status"] == "done" and state["step"] == RECONSTRUCTION_STEPS + EDIT_STEPS


def test_originals_are_untouched_and_are_always_the_editor_condition(finished_job):
    assert hashes(finished_job.scene.path) == finished_job.scene_hashes
    calls = finished_job.editor.calls
    assert len(calls) == EDIT_STEPS // EDIT_RATE
    schedule = EditSchedule(job_config().update, NUM_VIEWS, 1000)
    for index, call in enumerate(calls):
        view = schedule.view_for(index)  # dataparser index == frame index here (file names sort like the frames)
        original = torch.from_numpy(finished_job.scene.images[view]).permute(2, 0, 1)[None].float() / 255
        assert torch.allclose(call.original, original, atol=1e-6), f"edit {index} not conditioned on the original"
    # Late edits render a NeRF trained on edited images, yet the condition is still the original: the render has
    # moved towards the edit (red and blue swapped), the condition has not.
    last = calls[-1]
    assert (last.render - last.original.flip(1)).abs().mean() < (last.render - last.original).abs().mean()
    assert finished_job.editor.encoded == ["swap red and blue"]  # text embedded once per job
    assert all(call.instruction == ("embedding", "swap red and blue") for call in calls)
    assert {(c.guidance_scale, c.image_guidance_scale, c.ddim_steps) for c in calls} == {(7.5, 1.5, 20)}


def test_timesteps_in_range_and_views_in_a_fixed_random_order(finished_job):
    calls = finished_job.editor.calls
    assert all(20 <= call.timestep <= 980 for call in calls)
    assert len({call.timestep for call in calls}) > len(calls) // 2
    logged = [line for line in finished_job.recorder.logs if line.startswith("edit ")]
    views = [line.split("view ")[1].split(" ")[0] for line in logged]
    first_cycle = views[:NUM_VIEWS]
    assert sorted(first_cycle) == sorted(f"images/frame_{i:05d}.png" for i in range(NUM_VIEWS))
    assert len(views) > 2 * NUM_VIEWS
    assert views == [first_cycle[i % NUM_VIEWS] for i in range(len(views))]


def test_dataset_images_are_replaced_by_the_edits(finished_job):
    edited = sorted((finished_job.job_dir / "edited" / "images").glob("*.png"))
    assert len(edited) == NUM_VIEWS
    for path in edited:
        view = int(path.stem.split("_")[1])
        expected = finished_job.scene.images[view][..., ::-1] / 255.0  # the editor's output: RGB -> BGR
        assert np.abs(load_float(path) - expected).max() <= 1 / 255 + 1e-9


def test_nerf_renders_move_towards_the_edited_images(finished_job):
    snapshots = SnapshotStore(finished_job.job_dir / "snapshots")
    expected = [RECONSTRUCTION_STEPS, RECONSTRUCTION_STEPS + 50, RECONSTRUCTION_STEPS + EDIT_STEPS]
    assert snapshots.steps() == expected
    assert [r.reason for r in snapshots.records()] == ["reconstruction", "scheduled", "final"]
    assert [r.editing_step for r in snapshots.records()] == [0, 50, EDIT_STEPS]
    history = [snapshots.folder(step) / "views" for step in expected]
    first, last = history[0], history[-1]
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in last.iterdir())
    def mean_distance(folder: Path, edited: bool) -> float:
        per_view = []
        for render in folder.iterdir():
            original = finished_job.scene.images[int(render.stem.split("_")[1])] / 255.0
            per_view.append(np.abs(load_float(render) - (original[..., ::-1] if edited else original)).mean())
        return float(np.mean(per_view))

    assert mean_distance(last, edited=True) < 0.8 * mean_distance(first, edited=True)
    # At the start the NeRF shows the original scene; at the end it is closer to the edit than to the original.
    assert mean_distance(first, edited=False) < mean_distance(first, edited=True)
    assert mean_distance(last, edited=True) < mean_distance(last, edited=False)
    editing = [p for p in finished_job.recorder.progress if p.phase == "editing"]
    early = np.mean([p.losses["rgb_loss"] for p in editing[:10]])
    late = np.mean([p.losses["rgb_loss"] for p in editing[-10:]])
    assert late < early  # the loss against the (changing) dataset falls as the NeRF catches up


def test_progress_and_previews(finished_job):
    progress = finished_job.recorder.progress
    steps = [p.step for p in progress]
    assert steps == sorted(steps) and steps[-1] == RECONSTRUCTION_STEPS + EDIT_STEPS
    assert all(p.total_steps == RECONSTRUCTION_STEPS + EDIT_STEPS for p in progress)
    assert progress[-1].eta_seconds == 0 and progress[len(progress) // 2].eta_seconds > 0
    # the export reports rays shot of its budget and the points found so far, ending with what it kept
    exporting = [p for p in progress if p.phase == "exporting"]
    assert exporting and all(p.phase_total == exporting[0].phase_total for p in exporting)
    assert [p.phase_step for p in exporting] == sorted(p.phase_step for p in exporting)
    manifest = json.loads((finished_job.job_dir / "manifest.json").read_text())
    assert exporting[-1].points_found >= manifest["num_points"]  # outlier removal only drops points
    previews = finished_job.recorder.previews
    assert previews["viewport"].shape == (24, 32, 3) and previews["viewport"].dtype == np.uint8
    assert previews["viewport"].std() > 5  # the render shows the scene, not a flat colour
    assert any(name.startswith("edit/") for name in previews) and any(n.startswith("snapshot/") for n in previews)


def test_exports_are_coloured_and_in_the_input_frame(finished_job):
    manifest = json.loads((finished_job.job_dir / "manifest.json").read_text())
    cloud = PlyData.read(str(finished_job.job_dir / manifest["point_cloud"]))["vertex"]
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1).astype(np.float64)
    rgb = np.stack([cloud["red"], cloud["green"], cloud["blue"]], 1).astype(np.float64)
    assert len(xyz) == manifest["num_points"] > 1000
    scene = finished_job.scene
    low, high = scene.object_bounds()
    margin = 0.2 * scene.scale
    inside = np.all((xyz > low - margin) & (xyz < high + margin), axis=1)
    assert inside.mean() > 0.9, inside.mean()
    assert np.linalg.norm(np.median(xyz, 0) - scene.center) < 0.4 * scene.scale
    # The edit reached the geometry: the big sphere was red and is now blue.
    assert rgb[:, 2].mean() > rgb[:, 0].mean() + 20
    mesh = PlyData.read(str(finished_job.job_dir / manifest["mesh"]))
    vertices = np.stack([mesh["vertex"][c] for c in "xyz"], 1)
    faces = np.stack(mesh["face"]["vertex_indices"])
    assert len(faces) > 100 and faces.max() < len(vertices)
    assert {"red", "green", "blue"} <= set(mesh["vertex"].data.dtype.names)
    assert np.all((np.median(vertices, 0) > low - margin) & (np.median(vertices, 0) < high + margin))
    assert manifest["bounds_min"] == pytest.approx(xyz.min(0), abs=1e-4)
    for key in ("point_cloud", "mesh"):
        assert (finished_job.job_dir / manifest[key]).is_file()
    assert all((finished_job.job_dir / p).is_file() for p in manifest["edited_images"].values())
    # the geometry is the final snapshot's export; the reconstruction's weights are kept (never rotated away)
    snapshots = SnapshotStore(finished_job.job_dir / "snapshots")
    final = RECONSTRUCTION_STEPS + EDIT_STEPS
    assert manifest["mesh"] == f"snapshots/step-{final:09d}/export/{Path(manifest['mesh']).name}"
    assert snapshots.read_export(final) is not None
    assert all(snapshots.model(step).is_file() for step in snapshots.steps())
