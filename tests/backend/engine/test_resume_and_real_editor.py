"""Resume after an interrupted job; the real (tiny, random-weight) InstructPix2Pix editor with LPIPS end to end; CLI."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.export import PROBE_RAYS
from backend.job.snapshots import SnapshotStore
from backend.job.types import JobCallbacks, JobResult, Progress
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import TinyScene, make_tiny_scene

# Generous: ~1 min on an idle 2-core machine, several times that when other jobs share the CPU.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RECONSTRUCTION_STEPS = 300
EDIT_STEPS = 48
EDIT_RATE = 4
STOP_AFTER_EDIT = 5


def config(**nerf) -> EditJobConfig:
    return EditJobConfig(
        prompt="make it blue", device="cpu",
        nerf=tiny_nerf_config(reconstruction_steps=RECONSTRUCTION_STEPS, **nerf),
        update=DatasetUpdateConfig(total_steps=EDIT_STEPS, edit_every_n_steps=EDIT_RATE),
        output=OutputConfig(checkpoint_every=1000, snapshot_every=0, export_num_points=4000, poisson_depth=6),
    )


def reconstruction_model(job: Path) -> Path:
    """The job's snapshot of its reconstruction (the NeRF of the original scene)."""
    store = SnapshotStore(job / "snapshots")
    record = store.reconstruction()
    assert record is not None, f"{job} kept no reconstruction snapshot"
    return store.model(record.step)


@dataclass
class Run:
    result: JobResult
    states: list[str]
    logs: list[str]
    progress: list[Progress]


def run_job(engine: EditEngine, scene: Path, job: Path, stop_after_edit: int | None = None) -> Run:
    states: list[str] = []
    logs: list[str] = []
    progress: list[Progress] = []
    stop = threading.Event()

    def on_log(line: str) -> None:
        logs.append(line)
        if stop_after_edit is not None and line.startswith(f"edit {stop_after_edit}:"):
            stop.set()  # as the server's cancel would, from the callback thread

    callbacks = JobCallbacks(on_state=lambda s, d: states.append(s), on_log=on_log, on_progress=progress.append)
    return Run(engine.run(scene, job, callbacks, stop), states, logs, progress)


def edit_indices(logs: list[str]) -> list[int]:
    return [int(line.split(":")[0].split()[1]) for line in logs if line.startswith("edit ")]


@dataclass
class Resumed:
    scene: TinyScene
    job: Path
    first: Run
    state_after_cancel: dict
    second: Run


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Resumed:
    root = tmp_path_factory.mktemp("resume")
    scene = make_tiny_scene(root / "scene", num_views=10, size=32)
    job = root / "job"
    first = run_job(EditEngine(config(), ChannelSwapEditor(), progress_interval_s=0), scene.path, job,
                    stop_after_edit=STOP_AFTER_EDIT)
    state = json.loads((job / "state.json").read_text())
    # A new process would start from scratch: new engine, new editor, same job directory.
    second = run_job(EditEngine(config(), ChannelSwapEditor(), progress_interval_s=0), scene.path, job)
    return Resumed(scene, job, first, state, second)


def test_cancel_stops_within_one_cycle_with_a_checkpoint(resumed):
    assert resumed.first.result.status == "cancelled"
    assert resumed.first.states[-1] == "cancelled"
    state = resumed.state_after_cancel
    assert state["status"] == "cancelled" and state["edits_done"] == STOP_AFTER_EDIT + 1
    stop_step = RECONSTRUCTION_STEPS + STOP_AFTER_EDIT * EDIT_RATE + 1  # the step after the edit still runs
    assert state["step"] == stop_step and state["checkpoint"] == f"step-{stop_step:09d}.ckpt"
    assert (resumed.job / "checkpoints" / state["checkpoint"]).is_file()


def test_resume_continues_from_the_checkpoint_with_the_edited_images(resumed):
    second = resumed.second
    assert second.result.status == "done", second.result.error
    assert "reconstructing" not in second.states  # the reconstruction is not redone
    assert second.progress[0].step == resumed.state_after_cancel["step"] + 1
    assert any("resumed at step" in line and f"with {STOP_AFTER_EDIT + 1} edited images" in line
               for line in second.logs)
    # The edit sequence continues where it stopped: no edit repeated, none skipped.
    assert edit_indices(resumed.first.logs) == list(range(STOP_AFTER_EDIT + 1))
    assert edit_indices(second.logs) == list(range(STOP_AFTER_EDIT + 1, EDIT_STEPS // EDIT_RATE))
    assert second.result.steps == RECONSTRUCTION_STEPS + EDIT_STEPS
    manifest = json.loads((resumed.job / "manifest.json").read_text())
    assert manifest["edits_done"] == EDIT_STEPS // EDIT_RATE and len(manifest["edited_images"]) == 10


def test_rerunning_a_finished_job_does_nothing(resumed):
    before = (resumed.job / "manifest.json").read_bytes()
    again = run_job(EditEngine(config(), ChannelSwapEditor()), resumed.scene.path, resumed.job)
    assert again.result.status == "done" and again.states == ["preparing", "done"]
    assert (resumed.job / "manifest.json").read_bytes() == before


def test_real_tiny_instructpix2pix_with_lpips_end_to_end(resumed, random_alexnet_torch_home, tmp_path):
    from backend.editing.loaders import load_editor

    editor = load_editor("tiny", device="cpu")
    job_config = config(use_lpips=True, patch_size=32)
    job_config.update = DatasetUpdateConfig(total_steps=10, edit_every_n_steps=5, ddim_steps=4)
    job_config.start.checkpoint = str(reconstruction_model(resumed.job))
    engine = EditEngine(job_config, editor, progress_interval_s=0)
    run = run_job(engine, resumed.scene.path, tmp_path / "job")
    assert run.result.status == "done", run.result.error
    assert run.states == ["preparing", "editing", "exporting", "done"]
    assert all("lpips_loss" in p.losses and np.isfinite(p.losses["lpips_loss"]) for p in run.progress)
    assert edit_indices(run.logs) == [0, 1]
    edited = sorted((tmp_path / "job" / "edited" / "images").glob("*.png"))
    assert len(edited) == 2
    for path in edited:
        original = np.asarray(Image.open(resumed.scene.path / "images" / path.name), dtype=np.float64)
        image = np.asarray(Image.open(path), dtype=np.float64)
        assert image.shape == original.shape and np.abs(image - original).mean() > 1.0
    assert run.result.point_cloud is not None and run.result.point_cloud.stat().st_size > 0


def test_a_job_without_geometry_export_keeps_its_edits_and_writes_no_geometry(resumed, tmp_path):
    job_config = config()
    job_config.update = DatasetUpdateConfig(total_steps=8, edit_every_n_steps=4)
    job_config.output.export_geometry = False
    job_config.start.checkpoint = str(reconstruction_model(resumed.job))
    engine = EditEngine(job_config, ChannelSwapEditor(), progress_interval_s=0)
    run = run_job(engine, resumed.scene.path, tmp_path / "job")
    assert run.result.status == "done", run.result.error
    assert run.states == ["preparing", "editing", "done"]  # no "exporting"
    assert run.result.point_cloud is None and run.result.mesh is None
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert manifest["point_cloud"] is None and manifest["mesh"] is None and manifest["num_points"] == 0
    assert len(manifest["edited_images"]) == 2 and not list((tmp_path / "job").rglob("*.ply"))


def test_a_nerf_too_transparent_to_export_still_finishes_with_its_edits(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, size=24)
    job_config = config()
    job_config.nerf.reconstruction_steps = 0  # an untrained NeRF: nothing opaque to export
    job_config.update = DatasetUpdateConfig(total_steps=4, edit_every_n_steps=2)
    job_config.output.export_num_points = 1_000_000  # capped at 16 a pixel: 55,296 points, a 221,184-ray budget
    run = run_job(EditEngine(job_config, ChannelSwapEditor(), progress_interval_s=0), scene.path, tmp_path / "job")
    assert run.result.status == "done", run.result.error
    assert run.result.mesh is None and any(line.startswith("warning: no geometry exported") for line in run.logs)
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert "rays shot at the NeRF ended on opaque content" in manifest["geometry_error"]
    assert "%" in manifest["geometry_error"] and manifest["mesh"] is None
    assert len(manifest["edited_images"]) == 2  # the edits are kept
    # the export reported its progress and gave up after the probe, long before its budget
    exporting = [p for p in run.progress if p.phase == "exporting"]
    assert exporting and exporting[-1].phase_total == 4 * 16 * 6 * 24 * 24
    assert PROBE_RAYS <= exporting[-1].phase_step < PROBE_RAYS + job_config.nerf.eval_num_rays_per_chunk
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in exporting)


def test_cli_edits_from_a_checkpoint_and_reports_missing_lpips_weights(resumed, tmp_path, monkeypatch, capsys):
    from backend.cli_edit import main

    checkpoint = reconstruction_model(resumed.job).parent  # a snapshot folder names its weights
    common = ["--data", str(resumed.scene.path), "--prompt", "make it blue", "--editor", "tiny", "--tiny-nerf",
              "--checkpoint", str(checkpoint), "--steps", "8", "--edit-rate", "4", "--diffusion-steps", "3",
              "--device", "cpu", "--export-points", "3000", "--history-every", "4", "--quiet"]
    assert main([*common, "--output", str(tmp_path / "ok"), "--no-lpips"]) == 0
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    assert manifest["edits_done"] == 2 and (tmp_path / "ok" / manifest["mesh"]).is_file()
    assert len(manifest["snapshots"]) == 3  # editing steps 0 and 4, and the final state

    # No AlexNet weights, and offline even where the machine has internet: a proxy that refuses connections.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    capsys.readouterr()
    assert main([*common, "--output", str(tmp_path / "needs_lpips")]) == 4
    error = capsys.readouterr().err
    assert error.count("error: ") == 1 and "Traceback" not in error  # one message, said once, no traceback
    assert "--no-lpips" in error and "alexnet-owt-7be5be79.pth" in error
    assert "Traceback" in (tmp_path / "needs_lpips" / "edit.log").read_text()  # which is in the job's log
