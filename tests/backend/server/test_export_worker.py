"""The export thread of a server (issue 22, item 8): a snapshot deleted as its export finishes fails that export with
a final event, and the next export is still made (the thread used to die, leaving every later export queued)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import backend.job.snapshot_export as snapshot_export
import protocol
from backend.job.jobdir import JobDir
from backend.job.snapshots import SnapshotStore
from backend.server import Server, ServerConfig, register_basic_handlers
from backend.server.jobs import JobService, JobServiceConfig
from protocol import messages as m
from tests.backend.server.jobs_helpers import JobWatch, edit_request, upload
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[JobService]:
    server = Server(ServerConfig(probe_device=False))
    register_basic_handlers(server)
    jobs = JobService(server, JobServiceConfig(jobs_dir=tmp_path / "jobs"))
    jobs.start()
    server.start()
    yield jobs
    server.stop()
    assert server.stopped.wait(30)


def test_a_snapshot_deleted_as_its_export_finishes_fails_that_export_and_the_next_one_is_made(
        service, tmp_path, monkeypatch):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32)
    with protocol.Client(service.server.info, timeout_s=30) as client:
        reply = client.start_edit(edit_request(upload(client, scene), reconstruction_steps=300, total_steps=8, every=4,
                                               outputs=("images",), snapshots=m.SnapshotSettings(every_n_steps=4, views=1)))
        watch = JobWatch(reply.job_id)
        watch.follow(client, lambda w: bool(w.states) and w.states[-1] in m.FINAL_STATES)
        assert watch.states[-1] == "done", watch.logs[-5:]
        steps = [s.step for s in client.request(m.NerfSnapshotListRequest(job_id=reply.job_id)).snapshots]
        assert len(steps) >= 2, steps
        store = SnapshotStore(JobDir(service.store.work_dir(reply.job_id)).snapshots)
        real_export = snapshot_export.export_stored_snapshot

        def export_then_lose_the_snapshot(work, step, *args, **kwargs):
            result = real_export(work, step, *args, **kwargs)
            if step == steps[0]:
                store.delete(step)  # what a delete landing between the export's end and its report did
            return result

        monkeypatch.setattr(snapshot_export, "export_stored_snapshot", export_then_lose_the_snapshot)
        for step in steps[:2]:
            assert client.request(m.NerfSnapshotExportRequest(job_id=reply.job_id, step=step)).state == "queued"

        def ended(step: int):
            return [e for e in watch.exports if e.step == step and e.state in ("done", "failed", "cancelled")]

        watch.follow(client, lambda w: bool(ended(steps[0])) and bool(ended(steps[1])), timeout_s=300,
                     stop_when_final=False)
    lost, made = ended(steps[0])[-1], ended(steps[1])[-1]
    assert lost.state == "failed" and "deleted as its export finished" in lost.message
    assert made.state == "done" and made.artifacts, made
    # nothing left "in progress": the mark is cleared just after the final event is out (a delete is refused until)
    deadline = time.monotonic() + 30
    while service.snapshots.exporting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.snapshots.exporting == {}
