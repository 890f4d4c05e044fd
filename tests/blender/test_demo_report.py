"""The demo's labelled pictures (``python -m demo.report`` in the backend environment) from a plan with real PNGs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import bpy
import numpy as np
import pytest

from demo import layout
from tests.blender.helpers import REPO_ROOT, backend_python

pytestmark = pytest.mark.timeout(240)


def write_png(path: Path, rgb: np.ndarray) -> str:
    """``H W 3`` uint8 (top row first) to PNG with Blender's image API."""
    height, width = rgb.shape[:2]
    image = bpy.data.images.new(path.stem, width, height)
    try:
        rgba = np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)[::-1]
        image.pixels.foreach_set((rgba.astype(np.float32) / 255.0).ravel())
        path.parent.mkdir(parents=True, exist_ok=True)
        image.filepath_raw, image.file_format = str(path), "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)
    return path.name


def read_png(path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return np.round(pixels.reshape(height, width, 4)[::-1, :, :3] * 255).astype(np.uint8)


def solid(color: tuple[int, int, int], size: int = 24) -> np.ndarray:
    image = np.empty((size, size, 3), np.uint8)
    image[:] = color
    return image


def run_report(plan_path: Path) -> dict[str, str]:
    completed = subprocess.run([backend_python(), "-m", "demo.report", str(plan_path)], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=200)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_report_draws_the_sheet_plot_and_turntable_from_the_plan(tmp_path: Path) -> None:
    colors = {"original": (200, 30, 30), "edited": (30, 30, 200), "result": (30, 160, 30)}
    rows = []
    for view in range(2):
        row = {"label": f"view_{view:03d}"}
        for key, color in colors.items():
            if (view, key) != (1, "edited"):  # one edited image missing: the sheet says so instead of failing
                row[key] = "in/" + write_png(tmp_path / "in" / f"{key}_{view}.png", solid(color))
        rows.append(row)
    frames = {label: ["in/" + write_png(tmp_path / "in" / f"{label}_{i}.png", solid((i * 60, shade, 0), 16))
                      for i in range(4)] for label, shade in (("original scene", 0), ("imported result", 200))}
    record = {"loss_series": {"loss": [[s, "reconstructing" if s < 100 else "editing", 1.0 / (1 + s)] for s in range(0, 200, 10)],
                              "psnr": [[s, "reconstructing", 10.0 + s / 10] for s in range(0, 100, 10)]},
              "phase_starts": {"reconstructing": 0, "editing": 100}}
    plan = {"title": "\"make it blue\"", "subtitle": "TINY RANDOM editor", "warning": True,
            "sheet_columns": ["original render", "edited by the backend", "imported result (Blender)"],
            "sheet": rows, "turntable": {"rows": frames, "fps": 5}, "record": record,
            "outputs": {"contact_sheet": "out/sheet.png", "loss_plot": "out/losses.png",
                        "turntable_gif": "out/turntable.gif", "turntable_strip": "out/strip.png"}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    written = run_report(tmp_path / "plan.json")
    assert set(written) == {"contact_sheet", "loss_plot", "turntable_gif", "turntable_strip"}
    assert not list(tmp_path.glob("out/*.partial"))

    sheet = read_png(Path(written["contact_sheet"]))
    # the same grid the report lays out: 2 rows x 3 columns of SHEET_TILE tiles below the title and column headers
    _, boxes = layout.grid([[None] * 3] * 2, 192, gap=6, top=78 + 26, left=90)
    expected_h, expected_w = boxes[-1][-1].top + 192 + 6, boxes[-1][-1].left + 192 + 6
    assert sheet.shape[:2] == (expected_h, expected_w)
    for r, row_boxes in enumerate(boxes):
        for key, box in zip(colors, row_boxes):
            centre = sheet[box.top + 20, box.left + 20]  # away from the "(not edited)" text in the middle
            want = (255, 255, 255) if (r, key) == (1, "edited") else colors[key]
            assert tuple(centre) == want, (r, key)
    title_band = sheet[:78]
    assert (title_band < 128).any()  # text was drawn

    plot = read_png(Path(written["loss_plot"]))
    assert plot.shape[:2] == (420, 1100) and plot.std() > 10  # losses beside PSNR
    strip = read_png(Path(written["turntable_strip"]))
    assert strip.shape[0] == 2 * 16 + 3 * 2 and strip.shape[1] == 120 + 4 * 16 + 5 * 2
    gif = subprocess.run([backend_python(), "-c", "import sys; from PIL import Image; im = Image.open(sys.argv[1]); "
                          "print(im.n_frames, im.size[0], im.size[1], im.info.get('duration'))", written["turntable_gif"]],
                         capture_output=True, text=True, check=True).stdout.split()
    assert gif == ["4", "32", "16", "200"]  # 4 frames, original | result side by side, 5 fps


def test_report_without_losses_still_writes_a_plot_that_says_so(tmp_path: Path) -> None:
    plan = {"title": "t", "sheet_columns": [], "sheet": [], "turntable": {},
            "record": {"loss_series": {}, "phase_starts": {}}, "outputs": {"loss_plot": "losses.png"}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    written = run_report(tmp_path / "plan.json")
    assert list(written) == ["loss_plot"] and Path(written["loss_plot"]).is_file()


def test_report_scores_images_against_the_intended_edit_and_the_original(tmp_path: Path) -> None:
    """An image that took the edit scores higher against the target than against the original where the edit acts
    (the 8x8 square that differs); whole-image PSNRs follow the squared error computed here independently."""
    original = solid((200, 30, 30))
    target = original.copy()
    target[8:16, 8:16] = (30, 30, 200)
    took_edit = target.copy()
    took_edit[0, 0] = (190, 30, 30)  # one pixel off outside the region: the region score stays exact
    half_way = original.copy()
    half_way[8:16, 8:16] = (115, 30, 115)
    names = {name: "in/" + write_png(tmp_path / "in" / f"{name}.png", image) for name, image in
             {"original": original, "target": target, "took_edit": took_edit, "half_way": half_way}.items()}
    plan = {"title": "t", "sheet_columns": [], "sheet": [], "turntable": {},
            "record": {"loss_series": {}, "phase_starts": {}}, "outputs": {"loss_plot": "losses.png"},
            "scores": {"good": [[names["took_edit"], names["target"], names["original"]]],
                       "half": [[names["half_way"], names["target"], names["original"]]]}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    scores = run_report(tmp_path / "plan.json")["scores"]
    good, half = scores["good"], scores["half"]
    assert good["views"] == half["views"] == 1
    assert good["edited_region_vs_target_db"] == 100.0  # identical inside the region
    region_mse = (170 / 255) ** 2 * 2 / 3  # red and blue off by 170 of 255, green equal
    assert good["edited_region_vs_original_db"] == pytest.approx(10 * np.log10(1 / region_mse), abs=0.01)
    whole_mse = ((10 / 255) ** 2 / 3) / (24 * 24)  # one pixel, one channel off by 10
    assert good["vs_target_db"] == pytest.approx(10 * np.log10(1 / whole_mse), abs=0.01)
    assert half["edited_region_vs_target_db"] == pytest.approx(half["edited_region_vs_original_db"], abs=0.1)
    assert good["edited_region_vs_target_db"] > half["edited_region_vs_target_db"]
