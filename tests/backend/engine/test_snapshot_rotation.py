"""Snapshots cannot fill a disk (issue 22, item 11): a job keeps at most ``max_snapshots`` of them within
``max_snapshot_bytes``, rotating the oldest scheduled ones away (never the reconstruction, final or stopped ones, the
newest, or one that is in use), and a half-written snapshot is cleaned up."""

from __future__ import annotations

import pytest

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.job.snapshots import SnapshotRecord, SnapshotStore
from backend.job.types import JobCallbacks
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import make_tiny_scene


def store_with(tmp_path, reasons: list[str], size: int = 1000) -> SnapshotStore:
    store = SnapshotStore(tmp_path / "snapshots")
    for index, reason in enumerate(reasons):
        step = 100 + 10 * index
        store.model(step).parent.mkdir(parents=True, exist_ok=True)
        store.model(step).write_bytes(b"w" * size)
        store.write_record(SnapshotRecord(step=step, editing_step=step - 100, reason=reason))
    return store


def test_the_oldest_scheduled_snapshots_go_first_and_the_protected_ones_never(tmp_path):
    store = store_with(tmp_path, ["reconstruction", "scheduled", "scheduled", "scheduled", "stopped", "scheduled",
                                  "scheduled"])
    in_use = {120}
    deleted = store.rotate(4, 10**9, lambda record: record.step in in_use)
    assert [r.step for r in deleted] == [110, 130, 150]  # 120 is in use; the newest (160) stays
    assert store.steps() == [100, 120, 140, 160]
    assert not store.folder(110).exists()

    # the byte cap rotates too, but never below what must be kept
    store = store_with(tmp_path / "bytes", ["reconstruction", "scheduled", "scheduled", "final"], size=1000)
    deleted = store.rotate(100, 2500, lambda record: False)
    assert [r.step for r in deleted] == [110, 120] and store.steps() == [100, 130]
    assert store.rotate(1, 1, lambda record: False) == []  # reconstruction and final: kept whatever the cap

    # a snapshot the user pinned stays too
    store = store_with(tmp_path / "pinned", ["reconstruction", "scheduled", "scheduled", "scheduled"])
    record = store.read(110)
    assert record is not None
    record.pinned = True
    store.write_record(record)
    assert [r.step for r in store.rotate(2, 10**9, lambda record: False)] == [120]
    assert store.steps() == [100, 110, 130] and store.read(110).pinned


def test_a_half_written_snapshot_is_removed(tmp_path):
    store = store_with(tmp_path, ["reconstruction", "scheduled"])
    store.model(200).parent.mkdir(parents=True)
    store.model(200).write_bytes(b"half")  # a kill or a full disk before snapshot.json
    assert [p.name for p in store.remove_incomplete()] == ["step-000000200"]
    assert store.steps() == [100, 110] and not store.folder(200).exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_job_snapshotting_every_step_keeps_its_limit(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=24)
    config = EditJobConfig(prompt="swap", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=10),
                           update=DatasetUpdateConfig(total_steps=8, edit_every_n_steps=2),
                           output=OutputConfig(snapshot_every=1, snapshot_views=1, max_snapshots=4,
                                               export_geometry=False))
    rotated: list[SnapshotRecord] = []
    logs: list[str] = []
    result = EditEngine(config, ChannelSwapEditor()).run(scene.path, tmp_path / "job", JobCallbacks(
        on_snapshot_rotated=rotated.append, on_log=logs.append))
    assert result.status == "done", result.error
    kept = SnapshotStore(tmp_path / "job" / "snapshots").records()
    assert len(kept) == 4
    assert kept[0].reason == "reconstruction"
    every = sorted(r.step for r in [*kept, *rotated])
    assert [r.step for r in kept[1:]] == every[-3:]  # the oldest went first
    assert len(rotated) >= 5 and all(r.reason == "scheduled" for r in rotated)
    assert any("rotated away: a job keeps 4 snapshots" in line for line in logs)
