"""``python -m demo`` end to end against a real ``python -m backend serve`` (simulated editor, small nerfacto, small
renders): exit code, what it prints, and the outputs it leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.blender.helpers import REPO_ROOT, backend_python

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def server_runs_jobs(tmp_path: Path) -> bool:
    import protocol

    connection = tmp_path / "probe.json"
    process = subprocess.Popen([backend_python(), "-m", "backend", "serve", "--connection-file", str(connection),
                                "--no-device-probe"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not connection.exists():
            assert process.poll() is None and time.monotonic() < deadline, "backend serve did not start"
            time.sleep(0.05)
        with protocol.Client(protocol.read_connection_file(connection), timeout_s=30) as client:
            return "edit_start_request" in (client.hello().capabilities or [])
    finally:
        process.terminate()
        process.wait(20)


def test_python_m_demo_produces_every_output_and_the_simulated_edit_reaches_3d(tmp_path: Path) -> None:
    assert server_runs_jobs(tmp_path), "the backend server does not offer edit_start_request"
    out = tmp_path / "demo_out"
    environment = {**os.environ, "IN2N_BACKEND_PYTHON": backend_python(),
                   "HF_HUB_CACHE": str(tmp_path / "empty_hf_cache")}  # no weights: the simulated editor
    # the CPU preset with fewer views, steps and frames (300 steps on 6 views of 48 px left the NeRF without
    # opaque geometry to export)
    command = [sys.executable, "-m", "demo", "--out", str(out), "--views", "8", "--size", "64", "--samples", "8",
               "--reconstruction-steps", "400", "--edit-steps", "40", "--turntable-frames", "4", "--threads", "2"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        stdout, stderr = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the demo stops the backend it started before exiting
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"python -m demo took more than 540 s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "SIMULATED editor" in stdout and "NOT InstructPix2Pix" in stdout
    assert "Reconstructing" in stdout and "Editing" in stdout  # progress lines from the add-on's own status text

    summary = json.loads((out / "summary.json").read_text())
    assert summary["editor"]["real_weights"] is False and summary["editor"]["simulated"] is True
    assert summary["job"]["state"] == "done"
    # the targets went through the real server into its stored scene, and its editor blended toward them (that
    # the NeRF then converges to the edit is test_simulated_job's; this schedule is too short for that)
    stored = json.loads(next(out.glob("work/jobs/scenes/*/transforms.json")).read_text())
    assert [frame["target_file_path"] for frame in stored["frames"]] == [f"targets/frame_{i:05d}.png" for i in range(8)]
    from tests.blender.test_demo_report import read_png

    closer = []
    for name in summary["edited_views"]:
        edited, target, original = (read_png(out / folder / f"{name}.png").astype(float)
                                    for folder in ("edited", "scene/targets", "scene/images"))
        region = np.abs(target - original).mean(axis=-1) > 25
        closer.append(np.abs(edited - target)[region].mean() < np.abs(edited - original)[region].mean())
    assert sum(closer) > len(closer) / 2, closer
    # the NeRF itself is scored on the same held-out views as the imported result (how much the import loses)
    assert set(summary["scores"]) == {"single_2d_edits", "nerf_after_du", "nerf_heldout", "imported_result_heldout"}
    assert summary["scores"]["nerf_heldout"]["views"] == summary["scores"]["imported_result_heldout"]["views"] == 4
    assert summary["job"]["images_edited"] >= 1 and summary["job"]["previews_received"] >= 1
    assert summary["job"]["final_losses"] and summary["edited_views"]
    for key, path in summary["outputs"].items():
        assert Path(path).exists(), key
        assert str(path) in stdout, f"{key} is not printed"
    kinds = {obj["kind"] for obj in summary["result"]["objects"].values()}
    assert {"mesh", "pointcloud", "baked"} <= kinds  # Result: Both (the baked copy is what the sheet shows)
    # imported in the scene's world frame: the result overlaps the source objects' bounds
    low, high = (np.asarray(b) for b in summary["result"]["world_bounds"])
    src_low, src_high = (np.asarray(b) for b in summary["result"]["source_world_bounds"])
    assert (np.minimum(high, src_high) > np.maximum(low, src_low)).all()
    progress = json.loads((out / "progress.json").read_text())
    assert progress["loss_series"]["loss"] and {"reconstructing", "editing"} <= set(progress["phase_starts"])


def test_sigterm_stops_the_demo_and_the_backend_it_started(tmp_path: Path) -> None:
    import protocol

    assert server_runs_jobs(tmp_path), "the backend server does not offer edit_start_request"
    out = tmp_path / "demo_out"
    environment = {**os.environ, "IN2N_BACKEND_PYTHON": backend_python(), "HF_HUB_CACHE": str(tmp_path / "empty")}
    process = subprocess.Popen([sys.executable, "-m", "demo", "--out", str(out), "--views", "4", "--size", "32"],
                               cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until the add-on is connected to the backend it started
            if line.startswith("[demo] connected:"):
                break
        else:
            pytest.fail(f"the demo ended before connecting: {process.stderr.read() if process.stderr else ''}")
        connection = next(out.glob("work/blender_user/**/backend/connection.json"))
        with protocol.Client(protocol.read_connection_file(connection), timeout_s=30) as client:
            backend_pid = client.hello().pid
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, stderr = process.communicate()
            pytest.fail(f"the demo did not stop on SIGTERM:\n{rest[-2000:]}{stderr[-2000:]}")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "interrupted" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(backend_pid, 0)
