"""Faults of the jobs directory: a full disk fails the job (naming path and errno) and never the worker; a damaged
record.json lists its job as failed instead of making it vanish. A real server and job service, in this process
(so the disk can be made to fail), a real protocol client and real (tiny, CPU) jobs."""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import protocol
from backend import atomic
from backend.server.basic import register_basic_handlers
from backend.server.config import ServerConfig
from backend.server.core import Server
from backend.server.jobs.config import JobServiceConfig
from backend.server.jobs.service import JobService
from tests.backend.server.jobs_helpers import edit_request, upload
from tests.helpers.scenes import make_tiny_scene

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Server, JobService]]:
    server = Server(ServerConfig(heartbeat_interval_s=1.0, probe_device=False))
    register_basic_handlers(server)
    jobs = JobService(server, JobServiceConfig(jobs_dir=tmp_path / "jobs", default_editor="tiny", device="cpu"))
    jobs.start()
    server.start()
    try:
        yield server, jobs
    finally:
        server.stop()
        server.stopped.wait(120)


def wait_final(client: protocol.Client, job_id: str, timeout_s: float = 300) -> protocol.messages.JobSnapshot:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        (job,) = client.snapshot(job_id, subscribe=False).jobs
        if job.state in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def test_a_full_disk_fails_that_job_clearly_and_the_next_job_runs(service, tmp_path, monkeypatch) -> None:
    server, jobs = service
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    real_write_json = atomic.write_json
    disk_full = True

    def write_json(path, data) -> None:
        if disk_full and Path(path).name in ("record.json", "state.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write_json(path, data)

    monkeypatch.setattr(atomic, "write_json", write_json)
    with protocol.Client(server.info, timeout_s=30) as client:
        scene_id = upload(client, scene)
        quick = edit_request(scene_id, reconstruction_steps=4, total_steps=2, every=1, outputs=("images",))
        with pytest.raises(protocol.RemoteError, match=r"record.json.*No space left on device.*errno 28"):
            client.start_edit(quick)  # the record cannot even be created: said at once, with path and errno

        disk_full = False
        first = client.start_edit(quick)
        disk_full = True  # the job's own files (state.json) and its record fail while it runs
        failed = wait_final(client, first.job_id)
        assert failed.state == "failed"
        assert "No space left on device" in (failed.error_message or "")

        disk_full = False  # space is back: the worker is alive and the next job runs to the end
        second = client.start_edit(quick)
        done = wait_final(client, second.job_id)
        assert done.state == "done", done.error_message
        assert client.ping() < 5
    record = json.loads((jobs.store.job_dir(second.job_id) / "record.json").read_text())
    assert record["state"] == "done"


def test_a_damaged_record_lists_its_job_as_failed_with_the_reason(tmp_path) -> None:
    folder = tmp_path / "jobs" / "jobs" / "job-0123456789ab"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text("{ this is not json")
    (tmp_path / "jobs" / "jobs" / "not-a-job").mkdir()
    (tmp_path / "jobs" / "jobs" / "not-a-job" / "record.json").write_text("garbage")
    server = Server(ServerConfig(probe_device=False))
    jobs = JobService(server, JobServiceConfig(jobs_dir=tmp_path / "jobs", default_editor="tiny", device="cpu"))
    jobs.start()
    server.start()
    try:
        with protocol.Client(server.info, timeout_s=30) as client:
            listed = {job.job_id: job for job in client.snapshot(None, subscribe=False).jobs}
    finally:
        server.stop()
        server.stopped.wait(60)
    assert set(listed) == {"job-0123456789ab"}
    job = listed["job-0123456789ab"]
    assert job.state == "failed" and job.error_name == "DamagedRecord"
    assert "record.json is unreadable" in (job.error_message or "")
