"""Snapshots a user keeps and a server's space for them (issue 22, item 11), through a real ``python -m backend
serve``: a pinned snapshot survives its job's rotation (also when the job continues), and at the server's byte cap a
job keeps no new scheduled snapshot, says so in its log, and deletes nothing of another job's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol import messages as m
from tests.backend.server.jobs_helpers import (
    TINY_OVERRIDES,
    BackendProcess,
    JobWatch,
    edit_request,
    start_backend,
    upload,
)
from tests.helpers.scenes import TinyScene, make_tiny_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RECONSTRUCTION = 60


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> TinyScene:
    return make_tiny_scene(tmp_path_factory.mktemp("scene") / "scene", num_views=10, size=32)


def snapshotting(scene_id: str, total_steps: int, max_snapshots: int) -> m.EditStartRequest:
    """A snapshot every 2 editing steps, at most ``max_snapshots`` kept."""
    return edit_request(scene_id, reconstruction_steps=RECONSTRUCTION, total_steps=total_steps, every=2,
                        outputs=("images",), snapshots=m.SnapshotSettings(every_n_steps=2, views=1),
                        output={**TINY_OVERRIDES["output"], "max_snapshots": max_snapshots})


def run_to_the_end(client, watch: JobWatch) -> None:
    watch.follow(client, lambda w: bool(w.states) and w.states[-1] in m.FINAL_STATES)
    assert watch.states[-1] == "done", watch.logs[-5:]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    process = start_backend(tmp_path_factory.mktemp("backend"))
    yield process
    process.stop()


def test_a_pinned_snapshot_is_never_rotated_away(backend, scene):
    with backend.client() as client:
        scene_id = upload(client, scene)
        job_id = client.start_edit(snapshotting(scene_id, total_steps=4, max_snapshots=3)).job_id
        watch = JobWatch(job_id)
        run_to_the_end(client, watch)
        listed = client.request(m.NerfSnapshotListRequest(job_id=job_id)).snapshots
        assert [(s.step, s.reason, s.pinned) for s in listed] == [
            (RECONSTRUCTION, "reconstruction", False), (RECONSTRUCTION + 2, "scheduled", False),
            (RECONSTRUCTION + 4, "final", False)]
        pinned = RECONSTRUCTION + 2
        reply = client.request(m.NerfSnapshotPinRequest(job_id=job_id, step=pinned))
        assert reply.pinned
        watch.follow(client, lambda w: any(e.snapshot.step == pinned and e.snapshot.pinned for e in w.snapshots),
                     stop_when_final=False)  # announced to the job's subscribers
        client.request(m.JobContinueRequest(job_id=job_id, extra_steps=8))
        watch.states.clear()
        run_to_the_end(client, watch)
        kept = client.request(m.NerfSnapshotListRequest(job_id=job_id)).snapshots
    rotated = [e.snapshot.step for e in watch.snapshots if e.deleted]
    assert rotated, "the job kept more than 3 snapshots: nothing was rotated"
    assert pinned not in rotated
    assert any(s.step == pinned and s.pinned for s in kept), [(s.step, s.reason, s.pinned) for s in kept]
    assert all(s.pinned or s.reason != "scheduled" or s.step == kept[-1].step for s in kept)


def test_at_the_servers_byte_cap_new_scheduled_snapshots_are_refused_and_none_of_another_jobs_deleted(scene,
                                                                                                   tmp_path):
    backend = start_backend(tmp_path / "backend", "--max-snapshots-gb", "0.0001")  # about 100 KiB
    try:
        with backend.client() as client:
            scene_id = upload(client, scene)
            first = JobWatch(client.start_edit(snapshotting(scene_id, total_steps=4, max_snapshots=20)).job_id)
            run_to_the_end(client, first)
            before = [s.step for s in client.request(m.NerfSnapshotListRequest(job_id=first.job_id)).snapshots]
            second = JobWatch(client.start_edit(snapshotting(scene_id, total_steps=4, max_snapshots=20)).job_id)
            run_to_the_end(client, second)
            after = [s.step for s in client.request(m.NerfSnapshotListRequest(job_id=first.job_id)).snapshots]
            reasons = [s.reason for s in client.request(m.NerfSnapshotListRequest(job_id=second.job_id)).snapshots]
    finally:
        backend.stop()
    assert after == before  # the other job's snapshots are untouched
    assert reasons == ["reconstruction", "final"]  # its results are kept; no scheduled one
    refusals = [line for line in second.logs if "not kept" in line]
    assert refusals and "this server's snapshots take" in refusals[0] and "--max-snapshots-gb" in refusals[0]
