"""NeRF snapshots on a real tiny job: a stopped job leaves one to import, any snapshot exports as geometry (after the
job, or between the running job's steps without disturbing it), a job continues for more steps, and a chained edit
starts from a snapshot with its renders as the training images."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData

from backend.config import DatasetUpdateConfig, EditJobConfig, EditorConfig, OutputConfig, StartConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.job.jobdir import JobDir
from backend.job.snapshot_export import export_stored_snapshot
from backend.job.snapshots import SnapshotStore
from backend.job.types import JobCallbacks, SnapshotExportTask
from backend.nerf.dataset_update import EditSchedule
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import TinyScene, make_tiny_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RECONSTRUCTION_STEPS = 300
EDIT_STEPS = 40
EDIT_RATE = 4


def config(**update) -> EditJobConfig:
    return EditJobConfig(
        prompt="swap red and blue", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=RECONSTRUCTION_STEPS),
        update=DatasetUpdateConfig(**{"total_steps": EDIT_STEPS, "edit_every_n_steps": EDIT_RATE, **update}),
        output=OutputConfig(checkpoint_every=1000, snapshot_every=1000, snapshot_views=3, export_num_points=3000,
                            poisson_depth=6))


@dataclass
class Stopped:
    scene: TinyScene
    job: Path
    stopped_at: int


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Stopped:
    """A job cancelled after its third edit (as the server's Cancel does, from a callback)."""
    root = tmp_path_factory.mktemp("snapshots")
    scene = make_tiny_scene(root / "scene", num_views=10, size=32)  # see tiny_nerf_config
    stop = threading.Event()
    callbacks = JobCallbacks(on_log=lambda line: stop.set() if line.startswith("edit 2:") else None)
    result = EditEngine(config(), ChannelSwapEditor()).run(scene.path, root / "job", callbacks, stop)
    assert result.status == "cancelled", result.error
    return Stopped(scene, root / "job", result.steps)


def test_a_stopped_job_keeps_a_snapshot_that_exports_as_geometry(stopped):
    store = SnapshotStore(stopped.job / "snapshots")
    records = store.records()
    assert [r.reason for r in records] == ["reconstruction", "stopped"]
    assert records[0].step == RECONSTRUCTION_STEPS and records[0].editing_step == 0
    last = records[-1]
    assert last.step == stopped.stopped_at and last.images_edited == 3 and last.losses["loss"] > 0
    assert len(last.views) == 3 and all((store.folder(last.step) / path).is_file() for path in last.views.values())
    assert store.read_export(last.step) is None  # exported on request only

    progress = []
    export = export_stored_snapshot(stopped.job, last.step, "cpu", threading.Event(), progress.append)
    cloud = PlyData.read(str(store.folder(last.step) / export.point_cloud))["vertex"]
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)
    low, high = stopped.scene.object_bounds()
    margin = 0.2 * stopped.scene.scale
    assert export.num_points == len(xyz) > 500
    assert np.mean(np.all((xyz > low - margin) & (xyz < high + margin), axis=1)) > 0.9  # in the input frame
    assert (store.folder(last.step) / export.mesh).stat().st_size > 0 and export.num_faces > 100
    assert progress and progress[-1].finished and 0 < progress[-1].fraction <= 1
    # asked again: the cached export, not a second one
    before = (store.folder(last.step) / export.mesh).stat().st_mtime_ns
    assert export_stored_snapshot(stopped.job, last.step, "cpu", threading.Event(), progress.append) == export
    assert (store.folder(last.step) / export.mesh).stat().st_mtime_ns == before
    assert store.size_bytes(last.step) > (store.folder(last.step) / export.mesh).stat().st_size


def test_a_stopped_job_continues_for_more_steps(stopped, tmp_path):
    import shutil

    job = tmp_path / "job"
    shutil.copytree(stopped.job, job)
    assert JobDir(job).extend(8) == EDIT_STEPS + 8
    logs: list[str] = []
    result = EditEngine(config(), ChannelSwapEditor()).run(stopped.scene.path, job, JobCallbacks(on_log=logs.append))
    assert result.status == "done", result.error
    assert result.steps == RECONSTRUCTION_STEPS + EDIT_STEPS + 8
    assert result.edits_done == (EDIT_STEPS + 8) // EDIT_RATE  # the edit sequence went on where it stopped
    assert any(line.startswith(f"resumed at step {stopped.stopped_at}") for line in logs)
    reasons = [(r.reason, r.step) for r in SnapshotStore(job / "snapshots").records()]
    assert reasons == [("reconstruction", RECONSTRUCTION_STEPS), ("stopped", stopped.stopped_at),
                       ("final", result.steps)]


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("condition", ["original", "renders"])
def test_a_chained_edit_starts_from_a_snapshot(stopped, tmp_path, condition):
    store = SnapshotStore(stopped.job / "snapshots")
    snapshot = store.records()[-1]
    start = StartConfig(checkpoint=str(store.model(snapshot.step)), dataset="renders", condition=condition)
    editor = ChannelSwapEditor()
    states: list[str] = []
    chained = replace(config(total_steps=8), prompt="then make it green", start=start)
    result = EditEngine(chained, editor).run(stopped.scene.path, tmp_path / "job",
                                             JobCallbacks(on_state=lambda state, detail: states.append(state)))
    assert result.status == "done", result.error
    assert "reconstructing" not in states and result.steps == snapshot.step + 8
    jobs = JobDir(tmp_path / "job")
    # the first training images are the snapshot's renders: the pixels the snapshot's NeRF rendered when it was
    # kept (a reloaded nerfacto used to render up to 107 levels off, see In2nNerfactoModel.update_to_step, then up
    # to 17 with its proposal annealing one step later, see NerfTrainer.load_checkpoint)
    for name, relative in snapshot.views.items():
        start, kept = load(jobs.start_image_path(name)).astype(int), load(store.folder(snapshot.step) / relative)
        assert np.abs(start - kept).max() <= 1, name
    schedule = EditSchedule(chained.update, stopped.scene.c2w.shape[0], 1000)
    assert len(editor.calls) == 2
    for index, call in enumerate(editor.calls):
        view = schedule.view_for(index)  # dataparser index == frame index here (file names sort like the frames)
        photo = stopped.scene.images[view]
        render = load(jobs.start_image_path(f"images/frame_{view:05d}.png"))
        condition_image = photo if condition == "original" else render  # original: the paper's grounding
        expected = torch.from_numpy(condition_image.copy()).permute(2, 0, 1)[None].float() / 255
        assert torch.allclose(call.original, expected, atol=1e-6), f"edit {index}: not conditioned on {condition}"
        assert np.abs(render.astype(float) - photo).mean() > 1.0  # the renders are not the photos
    # the NeRF it started from is the chained job's reconstruction snapshot
    assert SnapshotStore(jobs.snapshots).records()[0].reason == "reconstruction"


def test_an_export_between_steps_leaves_the_running_job_exactly_as_it_was(stopped, tmp_path):
    """Two identical jobs (started from the stopped job's NeRF), one asked mid-way to export its first snapshot:
    the same final NeRF, bit for bit (one intra-op thread: the CPU kernels are reproducible for a given count)."""
    store = SnapshotStore(stopped.job / "snapshots")
    start_step = store.records()[-1].step
    job = replace(config(total_steps=8), editor=EditorConfig(source="tiny"),
                  start=StartConfig(checkpoint=str(store.model(start_step))))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain = EditEngine(job).run(stopped.scene.path, tmp_path / "plain")
        engine = EditEngine(job)
        done: list = []

        def ask(line: str) -> None:
            if line.startswith("edit 0:"):
                engine.request_export(SnapshotExportTask(start_step, threading.Event(), lambda progress: None,
                                                         lambda export, error: done.append((export, error))))

        exported = engine.run(stopped.scene.path, tmp_path / "exported", JobCallbacks(on_log=ask))
    finally:
        torch.set_num_threads(threads)
    assert plain.status == exported.status == "done"
    assert len(done) == 1 and done[0][1] is None and done[0][0].num_points > 500
    assert SnapshotStore(tmp_path / "exported" / "snapshots").read_export(start_step) is not None

    def weights(job_dir: Path) -> dict:
        return torch.load(job_dir / "checkpoints" / f"step-{start_step + 8:09d}.ckpt", weights_only=False)["pipeline"]

    a, b = weights(tmp_path / "plain"), weights(tmp_path / "exported")
    assert [key for key in a if not torch.equal(a[key], b[key])] == []
