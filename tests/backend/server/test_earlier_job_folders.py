"""Jobs folders written by earlier releases (tests/fixtures/job_folders, made by their own servers) under today's
server: a job killed while editing resumes and finishes, a finished job keeps its results listed and continues, and a
Continue that cannot run is refused before anything changes (issue 22, item 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import protocol
from backend.server.jobs.migrate import current_setting_names, migrate_stored_request
from protocol import messages as m
from tests.backend.server.jobs_helpers import JobWatch, start_backend

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "job_folders"


def test_renamed_settings_are_read_under_their_current_names():
    overrides = {"output": {"history_every": 0, "checkpoint_every": 20}, "update": {"edit_steps": 10},
                 "nerf": {"hidden_dim": 16}}
    assert current_setting_names(overrides) == {"output": {"snapshot_every": 0, "checkpoint_every": 20},
                                                "update": {"total_steps": 10}, "nerf": {"hidden_dim": 16}}
    # both names given: the current one counts; unknown names stay for validation to name them
    assert current_setting_names({"output": {"history_every": 5, "snapshot_every": 7, "bogus": 1}}) == {
        "output": {"snapshot_every": 7, "bogus": 1}}
    assert migrate_stored_request({"instruction": "x"}) == {"instruction": "x"}
    assert migrate_stored_request("damaged") == "damaged"


def jobs_by_state(jobs_dir: Path) -> dict[str, str]:
    records = [json.loads(path.read_text()) for path in (jobs_dir / "jobs").glob("*/record.json")]
    return {record["state"]: record["job_id"] for record in records}


def image_artifacts(job: m.JobSnapshot) -> list[str]:
    return sorted(a.name for a in job.artifacts if a.kind == "image" and a.name.startswith("images/"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("release", ["protocol-1.1", "protocol-2.0"])
def test_a_job_folder_of_an_earlier_release_resumes_and_continues(tmp_path, release):
    jobs_dir = tmp_path / "server" / "jobs"
    shutil.copytree(FIXTURES / release, jobs_dir)
    by_state = jobs_by_state(jobs_dir)
    finished, killed = by_state["done"], by_state["editing"]
    edits_before = json.loads((jobs_dir / "jobs" / finished / "work" / "state.json").read_text())["edits_done"]
    backend = start_backend(tmp_path / "server")
    try:
        with backend.client() as client:
            listed = {job.job_id: job for job in client.snapshot(subscribe=True).jobs}
            assert listed[finished].state == "done"
            results_before = image_artifacts(listed[finished])
            assert results_before, "the finished job's edited images are listed"
            assert listed[killed].state not in m.FINAL_STATES  # re-queued: it resumes

            watch = JobWatch(killed, states=[listed[killed].state])
            watch.follow(client, lambda w: w.states[-1] in m.FINAL_STATES, timeout_s=900)
            assert watch.states[-1] == "done", watch.logs[-5:]
            assert "reconstructing" not in watch.states
            assert any("resumed at step 140" in line for line in watch.logs), watch.logs[:5]

            reply = client.request(m.JobContinueRequest(job_id=finished, extra_steps=10))
            assert reply.total_steps == 30
            watch = JobWatch(finished, states=[reply.state])
            watch.follow(client, lambda w: w.states[-1] in m.FINAL_STATES, timeout_s=900)
            assert watch.states[-1] == "done", watch.logs[-5:]
            listed = {job.job_id: job for job in client.snapshot(subscribe=False).jobs}
            assert set(results_before) <= set(image_artifacts(listed[finished]))
            assert image_artifacts(listed[killed])
        state = json.loads((jobs_dir / "jobs" / finished / "work" / "state.json").read_text())
        assert state["edits_done"] == edits_before + 2  # 10 more steps, an edit every 5
        # the record is kept under today's names from now on
        overrides = json.loads((jobs_dir / "jobs" / finished / "record.json").read_text())["request"]["engine_overrides"]
        assert "history_every" not in overrides["output"] and "snapshot_every" in overrides["output"]
    finally:
        backend.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_continue_whose_stored_settings_do_not_load_is_refused_and_the_results_stay(tmp_path):
    jobs_dir = tmp_path / "server" / "jobs"
    shutil.copytree(FIXTURES / "protocol-2.0", jobs_dir)
    by_state = jobs_by_state(jobs_dir)
    finished, killed = by_state["done"], by_state["editing"]
    shutil.rmtree(jobs_dir / "jobs" / killed)  # only the finished job here
    record_path = jobs_dir / "jobs" / finished / "record.json"
    record = json.loads(record_path.read_text())
    record["request"]["engine_overrides"]["nerf"]["hidden_dimm"] = 16  # a setting no release knows
    record_path.write_text(json.dumps(record))
    backend = start_backend(tmp_path / "server")
    try:
        with backend.client() as client:
            before = client.snapshot(finished, subscribe=False).jobs[0]
            with pytest.raises(protocol.ValidationError, match="cannot continue: its stored settings do not load"):
                client.request(m.JobContinueRequest(job_id=finished, extra_steps=10), retries=0)
            after = client.snapshot(finished, subscribe=False).jobs[0]
        assert after.state == "done" and image_artifacts(after) == image_artifacts(before) != []
        assert json.loads((jobs_dir / "jobs" / finished / "work" / "state.json").read_text())["status"] == "done"
    finally:
        backend.stop()
