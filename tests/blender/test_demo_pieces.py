"""The demo's bpy-free pieces: editor choice (no downloads), presets, image layout, progress recorder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_addon.core import session as ss
from blender_addon.core import worker_api as api
from demo import config as dc
from demo import editor_choice as ec
from demo import layout
from demo.recorder import Recorder
from protocol import messages as m

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- editor choice
def fake_pipeline(folder: Path, *, skip: str = "") -> Path:
    """A diffusers InstructPix2Pix folder layout (empty weight files: only their presence is checked)."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    for part in ec.REQUIRED_PARTS:
        if part == skip:
            continue
        (folder / part).mkdir()
        if part in ("unet", "vae", "text_encoder"):
            (folder / part / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return folder


def hub_snapshot(cache: Path, revision: str, *, skip: str = "") -> Path:
    return fake_pipeline(cache / "models--timbrooks--instruct-pix2pix" / "snapshots" / revision, skip=skip)


def test_without_weights_the_simulated_editor_is_chosen_and_says_it_is_not_instructpix2pix(tmp_path: Path) -> None:
    choice = ec.choose_editor(None, environ={"HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path)})
    assert (choice.source, choice.real, choice.simulated) == ("simulated", False, True)
    assert "SIMULATED editor, NOT InstructPix2Pix" in choice.note and "--editor" in choice.note
    tiny = ec.choose_editor("tiny")
    assert (tiny.source, tiny.simulated) == ("tiny", False) and "NOT meaningful" in tiny.note
    assert ec.choose_editor("simulated").simulated


def test_the_cached_snapshot_refs_main_points_at_is_used(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    hub_snapshot(cache, "old")
    head = hub_snapshot(cache, "abc123")
    (cache / "models--timbrooks--instruct-pix2pix" / "refs").mkdir()
    (cache / "models--timbrooks--instruct-pix2pix" / "refs" / "main").write_text("abc123\n")
    choice = ec.choose_editor(None, environ={"HF_HUB_CACHE": str(cache)})
    assert choice.real and Path(choice.source) == head and "cache" in choice.origin


def test_an_incomplete_cached_snapshot_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    hub_snapshot(cache, "partial", skip="unet")  # an interrupted download
    assert ec.find_cached_snapshot(environ={"HF_HOME": str(tmp_path / "hf")}) is None
    assert ec.choose_editor(None, environ={"HF_HOME": str(tmp_path / "hf")}).source == "simulated"


def test_an_explicit_editor_folder_must_be_complete_and_the_error_names_what_is_missing(tmp_path: Path) -> None:
    good = fake_pipeline(tmp_path / "ip2p")
    assert ec.choose_editor(str(good)) == ec.EditorChoice(str(good.resolve()), True, "--editor")
    bad = fake_pipeline(tmp_path / "no_vae", skip="vae")
    with pytest.raises(ec.EditorChoiceError, match="vae/"):
        ec.choose_editor(str(bad))
    with pytest.raises(ec.EditorChoiceError, match="not a folder"):
        ec.choose_editor(str(tmp_path / "nowhere"))
    assert ec.choose_editor("tiny").real is False


def test_alexnet_weights_are_looked_up_in_torch_home(tmp_path: Path) -> None:
    assert not ec.alexnet_weights_present({"TORCH_HOME": str(tmp_path)})
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / ec.ALEXNET_FILE).write_bytes(b"")
    assert ec.alexnet_weights_present({"TORCH_HOME": str(tmp_path)})


# ---------------------------------------------------------------- presets
def test_auto_preset_is_the_paper_schedule_only_with_real_weights_on_a_gpu() -> None:
    config = dc.DemoConfig()
    assert dc.resolve_preset(config, real_editor=True, backend_has_gpu=True).name == "paper"
    assert dc.resolve_preset(config, real_editor=True, backend_has_gpu=False).name == "cpu"
    assert dc.resolve_preset(config, real_editor=False, backend_has_gpu=True).name == "cpu"
    paper = dc.resolve_preset(dc.DemoConfig(preset="paper"), False, False)
    assert (paper.edit_every_n_steps, paper.ddim_steps, paper.total_steps, paper.memory_mode) == (10, 20, 15000, "in2n")


def test_overrides_apply_to_a_copy_and_bad_values_name_the_field() -> None:
    preset = dc.resolve_preset(dc.DemoConfig(views=4, total_steps=30), False, False)
    assert (preset.views, preset.total_steps, preset.size) == (4, 30, dc.CPU.size)
    assert dc.CPU.views == 10 and dc.CPU.total_steps == 300  # module presets untouched
    preset.engine_overrides["nerf"]["hidden_dim"] = 999
    assert dc.CPU.engine_overrides["nerf"]["hidden_dim"] == 16
    with pytest.raises(ValueError, match="views"):
        dc.resolve_preset(dc.DemoConfig(views=1), False, False)
    with pytest.raises(ValueError, match="preset"):
        dc.resolve_preset(dc.DemoConfig(preset="huge"), False, False)


def test_engine_overrides_carry_the_editor_and_drop_lpips_without_alexnet() -> None:
    cpu = dc.engine_overrides(dc.CPU, "tiny", lpips_available=False)
    assert cpu["editor"] == {"source": "tiny"} and cpu["device"] == "cpu" and cpu["nerf"]["use_lpips"] is False
    paper = dc.resolve_preset(dc.DemoConfig(preset="paper"), True, True)
    assert dc.engine_overrides(paper, "/w/ip2p", lpips_available=True) == {
        "device": "auto", "output": {"snapshot_every": 1000, "snapshot_views": paper.views},
        "editor": {"source": "/w/ip2p"}}
    without = dc.engine_overrides(paper, "/w/ip2p", lpips_available=False)
    assert without["nerf"] == {"use_lpips": False, "patch_size": 1}
    assert "nerf" not in dc.PAPER.engine_overrides


def test_clean_outputs_removes_only_the_demos_own_files(tmp_path: Path) -> None:
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "view_000.png").write_bytes(b"x")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    dc.clean_outputs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- layout
def solid(height: int, width: int, color: tuple[int, int, int]) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = color
    return image


def test_fit_keeps_the_aspect_and_centres_the_image() -> None:
    tile = layout.fit(solid(10, 20, (200, 0, 0)), 40, background=(0, 0, 255))
    assert tile.shape == (40, 40, 3)
    red = (tile == (200, 0, 0)).all(-1)
    rows, cols = np.nonzero(red)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 29, 0, 39)
    assert (tile[0, 0] == (0, 0, 255)).all()
    checker = np.kron(np.eye(2, dtype=np.uint8) * 255, np.ones((1, 1), np.uint8))  # 2x2 grey, nearest upscale x3
    assert (layout.fit(checker, 6)[:, :, 0] == np.kron(checker, np.ones((3, 3), np.uint8))).all()


def test_grid_places_every_cell_in_its_box_and_leaves_missing_cells_empty() -> None:
    colors = [[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), None]]
    cells = [[solid(8, 8, c) if c else None for c in row] for row in colors]
    canvas, boxes = layout.grid(cells, 16, gap=2, top=10, left=5, background=(9, 9, 9))
    assert canvas.shape == (10 + 2 * 16 + 3 * 2, 5 + 2 * 16 + 3 * 2, 3)
    for row, row_boxes in zip(colors, boxes):
        for color, box in zip(row, row_boxes):
            patch = canvas[box.top:box.top + box.height, box.left:box.left + box.width]
            assert (patch == (color or (9, 9, 9))).all()
    assert boxes[1][1] == layout.Box(10 + 2 + 16 + 2, 5 + 2 + 16 + 2, 16, 16)
    with pytest.raises(ValueError, match="rectangle"):
        layout.grid([[cells[0][0]], [cells[0][0], cells[0][1]]], 16)


def test_strip_wraps_frames_into_rows_and_as_rgb8_converts_floats() -> None:
    frames = [solid(4, 4, (i * 40, 0, 0)) for i in range(5)]
    image = layout.strip(frames, gap=1, columns=3)
    assert image.shape == (2 * 4 + 3, 3 * 4 + 4, 3)
    assert (image[1 + 4 + 1, 1] == (120, 0, 0)).all()  # 4th frame starts the second row
    floats = np.full((2, 2, 4), 0.5, np.float32)
    assert (layout.as_rgb8(floats) == 128).all() and layout.as_rgb8(floats).shape == (2, 2, 3)
    assert layout.evenly_spaced(4, 10) == [0, 2, 5, 8] and layout.evenly_spaced(5, 3) == [0, 1, 2]


# ---------------------------------------------------------------- recorder
def progress(job: str, phase: str, step: int, total: int, **losses: float) -> api.ServerEvent:
    return api.ServerEvent(m.JobProgressEvent(job, m.Progress(phase=phase, step=step, total_steps=total,
                                                             losses=losses, images_edited=step // 10)))


def test_recorder_sees_every_notice_the_session_applies_and_passes_it_on() -> None:
    state = ss.SessionState()
    state.connection = "connected"
    recorder = Recorder(m, api, clock=iter(range(100)).__next__)
    recorder.attach(state)
    notices = [api.JobStarted("job-1", "queued", None, "scene-1"),
               progress("job-1", "reconstructing", 50, 100, loss=0.5, psnr=12.0),
               progress("job-1", "reconstructing", 100, 100, loss=0.25),
               progress("other-job", "editing", 5, 20, loss=99.0),  # another client's job: not ours
               progress("job-1", "editing", 10, 20, loss=0.3, rgb_loss=float("nan")),
               progress("job-1", "exporting", 80_000, 221_184, loss=0.3),  # rays shot, not steps: not plotted
               api.ServerEvent(m.JobStateEvent("job-1", "done")),
               api.Failed("Import result", "disk full")]
    for notice in notices:
        state.apply(notice)
    assert state.job is not None and state.job.state == "done" and state.job.phase == "exporting"  # the add-on still updates
    record = recorder.record
    assert record.job_id == "job-1" and [s["state"] for s in record.states] == ["queued", "done"]
    assert record.phase_starts() == {"reconstructing": 0, "editing": 100}
    series = record.loss_series()
    assert series["loss"] == [(50, "reconstructing", 0.5), (100, "reconstructing", 0.25), (110, "editing", 0.3)]
    assert "rgb_loss" not in series and series["psnr"] == [(50, "reconstructing", 12.0)]  # NaN dropped
    assert record.errors == ["Import result: disk full"]
    assert record.to_json()["loss_series"]["loss"][-1] == [110, "editing", 0.3]


def test_recorder_keeps_downloaded_artifacts_with_their_camera_index(tmp_path: Path) -> None:
    recorder = Recorder(m, api)
    artifact = m.ArtifactInfo(name="edited/frame_00003.png", kind="image", size=3, sha256="0" * 64,
                              metadata={"camera_index": 3})
    recorder.observe(api.ResultsFetched("job-1", {artifact.name: tmp_path / "a.png"}, [artifact]))
    assert recorder.record.result_files == {artifact.name: tmp_path / "a.png"}
    assert recorder.record.artifacts[artifact.name]["metadata"] == {"camera_index": 3}


def test_losses_of_a_server_that_counts_steps_globally_are_not_shifted() -> None:
    recorder = Recorder(m, api)
    recorder.observe(api.JobStarted("job-1", "queued", None, "scene-1"))
    for notice in (progress("job-1", "reconstructing", 40, 300, loss=0.4), progress("job-1", "reconstructing", 100, 300, loss=0.2),
                   progress("job-1", "editing", 104, 300, loss=0.3), progress("job-1", "editing", 300, 300, loss=0.1)):
        recorder.observe(notice)
    record = recorder.record
    assert record.phase_offsets() == {"reconstructing": 0, "editing": 0}
    assert record.phase_starts() == {"reconstructing": 0, "editing": 104}
    assert [point[0] for point in record.loss_series()["loss"]] == [40, 100, 104, 300]


def test_usage_errors_exit_2_before_anything_starts(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.blender.helpers import REPO_ROOT

    for args, message in ((["--editor", str(tmp_path / "nowhere")], "not a folder"),
                          (["--views", "0"], "--views must be positive"), (["--instruction", " "], "empty")):
        completed = subprocess.run([sys.executable, "-m", "demo", "--out", str(tmp_path / "out"), *args], cwd=REPO_ROOT,
                                   capture_output=True, text=True, timeout=60)
        assert completed.returncode == 2 and message in completed.stderr, (args, completed.stderr)
    assert not (tmp_path / "out").exists()
