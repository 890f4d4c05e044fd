"""The consistency runner end to end through the real engine, on a tiny ray-cast dataset (no Blender needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.consistency import run
from tests.helpers.scenes import DEFAULT_SPHERES, Sphere, make_tiny_scene

EDITED_SPHERES = (Sphere(DEFAULT_SPHERES[0].center, DEFAULT_SPHERES[0].radius, (0.1, 0.3, 0.9)), *DEFAULT_SPHERES[1:])


def make_dataset(root: Path) -> Path:
    """The render_dataset layout, ray-cast by the test helper: sphere 0 recoloured from red to blue."""
    for split, spheres, views, distance in (("original", DEFAULT_SPHERES, 6, 1.3), ("edited_gt", EDITED_SPHERES, 6, 1.3),
                                             ("heldout_original", DEFAULT_SPHERES, 2, 1.5),
                                             ("heldout_edited", EDITED_SPHERES, 2, 1.5)):
        make_tiny_scene(root / split, num_views=views, size=24, spheres=spheres, camera_distance=distance)
    (root / "dataset.json").write_text(json.dumps({"train_views": 6, "heldout_views": 2, "size": 24}))
    return root


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255


@pytest.mark.timeout(900)
def test_runner_compares_the_three_methods_through_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dataset(tmp_path / "data")
    monkeypatch.setenv("OUT", str(tmp_path / "device_out"))
    out = tmp_path / "out"
    assert run.main(["--data", str(data), "--out", str(out), "--quick", "--device", "cpu", "--steps", "4",
                     "--edit-steps", "6", "--edit-rate", "2", "--one-shot-steps", "4", "--rays", "64"]) == 0

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"iterative_du", "one_shot", "no_edit"}
    assert printed["comparison"] == results["comparison"]
    du, one_shot, no_edit = (results["methods"][name] for name in ("iterative_du", "one_shot", "no_edit"))
    # Iterative DU continued the shared reconstruction (4 steps) for 6 steps, editing a view every 2 steps
    assert (du["steps"], du["edits"]) == (10, 3)
    assert (one_shot["steps"], one_shot["edits"], no_edit["steps"], no_edit["edits"]) == (4, 0, 4, 0)
    assert len(list((out / "jobs" / "iterative_du" / "edited").rglob("*.png"))) == 3
    for entry in (du, one_shot, no_edit):
        assert len(entry["per_view"]) == 2
        assert 0 < entry["mean"]["psnr"] < 100 and 0 < entry["train_seconds"] <= entry["total_seconds"]
    assert results["comparison"]["iterative_du_minus_one_shot_psnr_db"] == pytest.approx(
        du["mean"]["psnr"] - one_shot["mean"]["psnr"])
    assert results["comparison"]["unedited_drift_db"]["iterative_du"] == pytest.approx(
        no_edit["mean"]["psnr_unedited_region"] - du["mean"]["psnr_unedited_region"])

    # the one-shot training set: each original edited once at a high noise level, i.e. close to its GT edit
    for name in ("frame_00000.png", "frame_00003.png"):
        edited = read(out / "one_shot_scene" / "images" / name)
        target = read(data / "edited_gt" / "images" / name)
        original = read(data / "original" / "images" / name)
        assert np.abs(edited - target).mean() < np.abs(edited - original).mean()
    # held-out masks mark the recoloured sphere only
    mask = read(out / "masks" / "heldout_000.png")[..., 0] > 0.5
    assert 0.005 < mask.mean() < 0.6
    for name in ("results.json", "consistency.png", "heldout_grid.png"):
        assert (tmp_path / "device_out" / name).is_file()
    shutil.rmtree(out / "jobs")  # checkpoints are large-ish; tmp_path cleanup would do it too
