"""A job directory damaged by a crash or a full disk: the newest checkpoint garbage (resume from an older one),
state.json / config.json garbage (a failure naming the file, not a bare JSONDecodeError)."""

from __future__ import annotations

import threading

import pytest

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, StartConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.job.types import JobCallbacks
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def config() -> EditJobConfig:
    return EditJobConfig(prompt="swap", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=12),
                         update=DatasetUpdateConfig(total_steps=24, edit_every_n_steps=4),
                         output=OutputConfig(checkpoint_every=4, keep_checkpoints=3, snapshot_every=0,
                                             export_geometry=False))


def run(job_dir, scene, stop_after_edit: int | None = None):
    logs: list[str] = []
    stop = threading.Event()

    def on_log(line: str) -> None:
        logs.append(line)
        if stop_after_edit is not None and line.startswith(f"edit {stop_after_edit}:"):
            stop.set()

    result = EditEngine(config(), ChannelSwapEditor()).run(scene.path, job_dir, JobCallbacks(on_log=on_log), stop)
    return result, logs


def test_a_garbage_newest_checkpoint_resumes_from_the_older_one(tmp_path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    job = tmp_path / "job"
    first, _ = run(job, scene, stop_after_edit=3)
    assert first.status == "cancelled"
    checkpoints = sorted((job / "checkpoints").glob("step-*.ckpt"))
    assert len(checkpoints) >= 2
    checkpoints[-1].write_bytes(b"this is not a checkpoint")
    older_step = int(checkpoints[-2].stem.split("-")[1])
    result, logs = run(job, scene)
    assert result.status == "done", result.error
    assert any(f"checkpoint {checkpoints[-1]} is unreadable" in line for line in logs)
    assert any(line.startswith(f"resumed at step {older_step}") for line in logs), logs


@pytest.mark.parametrize("name", ["state.json", "config.json"])
def test_garbage_job_files_fail_naming_the_file(tmp_path, name) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    job = tmp_path / "job"
    first, _ = run(job, scene, stop_after_edit=0)
    assert first.status == "cancelled"
    (job / name).write_text('{"status": "runn')  # cut short, as a crash mid-write without atomic rename would
    result, _ = run(job, scene)
    assert result.status == "failed" and result.error_kind == "JobDirError"
    assert str(job / name) in result.error and "start over" in result.error


@pytest.mark.parametrize("content", [b"not a checkpoint" * 64, b"PK\x03\x04" + b"\0" * 200])
def test_an_edit_starting_from_a_damaged_nerf_fails_saying_so(tmp_path, content) -> None:
    """Not torch's advice to load with weights_only=False (which would run a tampered file's code)."""
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    start = tmp_path / "model.ckpt"
    start.write_bytes(content)
    damaged = config()
    damaged.start = StartConfig(checkpoint=str(start), dataset="renders")
    result = EditEngine(damaged, ChannelSwapEditor()).run(scene.path, tmp_path / "job", JobCallbacks())
    assert result.status == "failed"
    assert "the NeRF this edit starts from (model.ckpt) is damaged or not a checkpoint" in (result.error or "")
    assert "weights_only" not in (result.error or "")
