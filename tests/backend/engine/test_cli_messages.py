"""What ``python -m backend edit`` tells a user: one message for an expected failure (no traceback, the documented
exit code, what to do), nothing but the summary with --quiet, and an honest estimate before the work starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli_edit import announce_estimate, build_parser, config_from_args
from backend.cli_output import ProgressBar
from backend.cost_model import estimate
from tests.helpers.scenes import make_tiny_scene

pytestmark = pytest.mark.timeout(600)
REPO_ROOT = Path(__file__).resolve().parents[3]


def edit(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    command = [sys.executable, "-m", "backend", "edit", "--data", str(scene.path), "--prompt", "make it blue",
               "--output", str(tmp_path / "job"), "--tiny-nerf", "--no-lpips", "--device", "cpu",
               "--reconstruction-steps", "4", "--steps", "2", "--edit-rate", "1", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=500,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_missing_editor_weights_print_one_message_naming_the_download_and_exit_4(tmp_path) -> None:
    run = edit(tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty_hf_home")})
    output = run.stdout + run.stderr
    assert run.returncode == 4, output
    assert "Traceback" not in output
    assert output.count("are not in the Hugging Face cache") == 1  # said once
    assert "hf download timbrooks/instruct-pix2pix" in run.stderr
    assert "Traceback" in (tmp_path / "job" / "edit.log").read_text()  # the details are in the job's log


def test_quiet_prints_nothing_but_warnings_and_the_summary(tmp_path) -> None:
    run = edit(tmp_path, "--editor", "tiny", "--quiet")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("done: 6 NeRF steps, 2 edits\n")
    # stderr: warnings (this tiny NeRF is too transparent for geometry) and the summary's pointer to them
    for line in run.stderr.splitlines():
        assert line.startswith(("warning:", "  no point cloud or mesh")), line
    assert "%|" not in run.stderr and "[reconstructing]" not in run.stderr  # no progress display, no state lines


def test_paper_defaults_on_a_cpu_warn_with_an_estimate_and_name_the_preset(tmp_path, capsys) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=8, size=32)
    args = build_parser().parse_args(["--data", str(scene.path), "--prompt", "x", "--output", str(tmp_path / "job"),
                                      "--device", "cpu"])
    announce_estimate(config_from_args(args), args, ProgressBar("info", tmp_path / "job" / "edit.log"))
    err = capsys.readouterr().err
    assert err.startswith("capture: nerfstudio layout, 8 views of 32x32\nestimate: about ") and " days on cpu" in err
    assert "warning: this job would take" in err and "--preset quick fits this device" in err
    quick = build_parser().parse_args([*map(str, ["--data", scene.path, "--prompt", "x", "--output", tmp_path / "q"]),
                                       "--device", "cpu", "--preset", "quick"])
    announce_estimate(config_from_args(quick), quick, ProgressBar("info", tmp_path / "q" / "edit.log"))
    err = capsys.readouterr().err
    assert err.startswith("capture: nerfstudio layout, 8 views of 32x32\nestimate: about ")
    assert "warning" not in err  # minutes: nothing to warn about


def test_the_cost_model_scales_with_the_work_and_the_device() -> None:
    base = config_from_args(build_parser().parse_args(["--data", "d", "--output", "o", "--prompt", "x"]))
    cpu = estimate(base, 10, 512, 512, "cpu")
    cuda = estimate(base, 10, 512, 512, "cuda")
    assert cuda.total_s * 50 < cpu.total_s  # a GPU is far faster
    assert cuda.edits == 1500 and 2 * 3600 < cuda.total_s < 48 * 3600  # the paper's schedule: hours on a GPU
    base.nerf.rays_per_batch *= 2
    doubled = estimate(base, 10, 512, 512, "cuda")
    assert doubled.reconstruction_s == pytest.approx(2 * cuda.reconstruction_s)
    assert doubled.edits_s == pytest.approx(cuda.edits_s)
