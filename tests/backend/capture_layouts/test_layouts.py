"""The shared capture reader on small datasets of each layout, written by independent code (tests/helpers/layouts.py):
the read cameras project known 3D points where each format's own convention puts them, COLMAP models convert as
nerfstudio's own ``colmap_to_json`` does, and the backend trains from every layout and writes the edit back in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import capture
from backend.scene import export_in_layout, load_scene, write_dataparser_input
from tests.helpers import layouts

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[3]
POINTS = layouts.CENTER + np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.25, 0.15, -0.1], [0.1, 0.3, 0.2]])


def project_opengl(c2w: np.ndarray, fl_x: float, fl_y: float, cx: float, cy: float, points: np.ndarray) -> np.ndarray:
    """nerfstudio / Blender convention: camera looks down -z, y up; pixel origin at the top-left corner."""
    camera = (np.linalg.inv(c2w) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
    return np.c_[fl_x * camera[:, 0] / -camera[:, 2] + cx, -fl_y * camera[:, 1] / -camera[:, 2] + cy]


def projected(frame: capture.CaptureFrame, points: np.ndarray) -> np.ndarray:
    k = frame.intrinsics
    return project_opengl(np.asarray(frame.transform_matrix), k.fl_x, k.fl_y, k.cx, k.cy, points)


@pytest.mark.parametrize("writer", [layouts.write_nerf_synthetic, layouts.write_instant_ngp])
def test_transforms_layouts_read_cameras_that_see_points_where_the_writer_put_them(tmp_path, writer) -> None:
    written = writer(tmp_path / "data")
    read = capture.read_capture(tmp_path / "data")
    assert read.layout == ("nerf-synthetic" if writer is layouts.write_nerf_synthetic else "instant-ngp")
    train = read.train_frames
    assert len(train) == len(written.c2w)
    for frame, c2w in zip(train, written.c2w):
        assert (frame.intrinsics.w, frame.intrinsics.h) == written.size  # taken from the images
        expected = project_opengl(c2w, *written.focal, *written.principal, POINTS)
        np.testing.assert_allclose(projected(frame, POINTS), expected, atol=1e-6)
        assert (tmp_path / "data" / frame.file_path).is_file()
    if writer is layouts.write_nerf_synthetic:
        assert train[0].file_path == "train/r_0.png"  # extensionless ./train/r_0 resolved to the file that exists
        assert [f.split for f in read.frames].count("test") == 2
    else:
        assert {"aabb_scale": 4, "scale": 0.33, "offset": [0.5, 0.5, 0.5]}.items() <= read.extra.items()


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_models_convert_like_nerfstudio_and_see_points_where_colmap_does(tmp_path, binary) -> None:
    written = layouts.write_colmap(tmp_path / "data", binary=binary)
    read = capture.read_capture(tmp_path / "data")
    assert read.layout == "colmap" and len(read.frames) == len(written.c2w)
    applied = np.asarray(read.extra["applied_transform"])
    fx, fy = written.focal
    cx, cy = written.principal
    for index, (frame, c2w) in enumerate(zip(read.frames, written.c2w)):
        assert frame.file_path == f"images/img_{index:03d}.png"
        rotation, translation = layouts.colmap_extrinsics(c2w)
        camera = POINTS @ rotation.T + translation  # COLMAP: X_cam = R X + t, OpenCV axes
        focal_y = fy if index % 2 == 0 else fx  # odd images use the SIMPLE_RADIAL camera (one focal length)
        expected = np.c_[fx * camera[:, 0] / camera[:, 2] + cx, focal_y * camera[:, 1] / camera[:, 2] + cy]
        # the read cameras live in nerfstudio's re-oriented world: p' = applied_transform p
        np.testing.assert_allclose(projected(frame, POINTS @ applied[:, :3].T + applied[:, 3]), expected, atol=1e-6)
        assert frame.extra["k1"] == 0.0 and frame.extra["colmap_im_id"] == index + 1

    if not binary:
        return  # nerfstudio's colmap_to_json reads binary models only; the projections above cover the text reader
    # nerfstudio's own conversion of the same model gives the same matrices and intrinsics
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    (tmp_path / "ns").mkdir()
    colmap_to_json(tmp_path / "data" / "sparse" / "0", tmp_path / "ns")
    reference = json.loads((tmp_path / "ns" / "transforms.json").read_text())
    assert reference["applied_transform"] == read.extra["applied_transform"]
    by_name = {Path(f["file_path"]).name: f for f in reference["frames"]}
    for frame in read.frames:
        ours = by_name[Path(frame.file_path).name]
        np.testing.assert_allclose(frame.transform_matrix, ours["transform_matrix"], atol=1e-9)
        k = frame.intrinsics
        assert (k.fl_x, k.fl_y, k.cx, k.cy, k.w, k.h) == pytest.approx(
            (ours["fl_x"], ours["fl_y"], ours["cx"], ours["cy"], ours["w"], ours["h"]))


def test_an_unknown_layout_lists_the_accepted_ones_and_unsupported_cameras_are_named(tmp_path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(capture.CaptureError) as info:
        capture.read_capture(tmp_path / "photos")
    assert all(name in str(info.value) for name in capture.LAYOUTS)
    layouts.write_colmap(tmp_path / "fisheye", binary=False)
    cameras = tmp_path / "fisheye" / "sparse" / "0" / "cameras.txt"
    cameras.write_text(cameras.read_text().replace("SIMPLE_RADIAL", "OPENCV_FISHEYE"))
    with pytest.raises(capture.CaptureError, match="OPENCV_FISHEYE is not supported.*image_undistorter"):
        capture.read_capture(cameras)  # a file of the model names the layout too


@pytest.mark.parametrize("layout", ["nerf-synthetic", "instant-ngp", "colmap"])
def test_nerfstudios_dataparser_reads_every_layout_through_one_transforms_json(tmp_path, layout) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    writer = {"nerf-synthetic": layouts.write_nerf_synthetic, "instant-ngp": layouts.write_instant_ngp,
              "colmap": lambda folder: layouts.write_colmap(folder, binary=True)}[layout]
    written = writer(tmp_path / "data")
    scene = load_scene(tmp_path / "data")
    assert scene.layout == layout and scene.num_views == len(written.c2w)  # held-out views are not trained on
    data = write_dataparser_input(scene, tmp_path / "input")
    outputs = NerfstudioDataParserConfig(data=data, eval_mode="all").setup().get_dataparser_outputs("train")
    assert sorted(Path(p).resolve() for p in outputs.image_filenames) == sorted(f.image_path for f in scene.frames)
    assert "applied_transform" not in json.loads((data / "transforms.json").read_text())


def test_edited_images_are_written_back_in_the_layout_the_user_brought(tmp_path) -> None:
    layouts.write_nerf_synthetic(tmp_path / "data", train=3, test=1)
    scene = load_scene(tmp_path / "data")
    edited = tmp_path / "edited.png"
    Image.new("RGB", (32, 32), (10, 20, 200)).save(edited)
    out = export_in_layout(scene, {"train/r_1.png": edited}, tmp_path / "out")
    assert sorted(p.name for p in out.glob("*.json")) == ["transforms_test.json", "transforms_train.json"]
    assert (out / "transforms_train.json").read_text() == (tmp_path / "data" / "transforms_train.json").read_text()
    assert np.asarray(Image.open(out / "train" / "r_1.png"))[0, 0].tolist() == [10, 20, 200]
    assert (out / "train" / "r_0.png").read_bytes() == (tmp_path / "data" / "train" / "r_0.png").read_bytes()
    assert capture.read_capture(out).layout == "nerf-synthetic"  # their own pipeline reads it as before


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["nerf-synthetic", "instant-ngp", "colmap"])
def test_the_cli_edits_each_layout_end_to_end_and_exports_it_back(tmp_path, layout) -> None:
    writer = {"nerf-synthetic": layouts.write_nerf_synthetic, "instant-ngp": layouts.write_instant_ngp,
              "colmap": lambda folder: layouts.write_colmap(folder, binary=layout == "colmap")}[layout]
    written = writer(tmp_path / "data")
    job = tmp_path / "job"
    completed = subprocess.run(
        [sys.executable, "-m", "backend", "edit", "--data", str(tmp_path / "data"), "--prompt", "make it blue",
         "--output", str(job), "--editor", "tiny", "--tiny-nerf", "--reconstruction-steps", "20", "--steps", "8",
         "--edit-every-n-steps", "2", "--ddim-steps", "2", "--no-lpips", "--device", "cpu", "--no-geometry",
         "--quiet"], capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    held_out = " (+2 held-out views, not edited)" if layout == "nerf-synthetic" else ""
    size = "x".join(map(str, written.size))
    assert f"capture: {layout} layout, {len(written.c2w)} views of {size}{held_out}" in (job / "edit.log").read_text()
    manifest = json.loads((job / "manifest.json").read_text())
    assert manifest["edited_capture"]["layout"] == layout and len(manifest["edited_images"]) == 4
    exported = capture.read_capture(job / manifest["edited_capture"]["folder"])
    assert exported.layout == layout and len(exported.train_frames) == len(written.c2w)
    changed = [name for name in manifest["edited_images"]
               if np.asarray(Image.open(job / "edited_capture" / name).convert("RGB")).tobytes()
               != np.asarray(Image.open(tmp_path / "data" / name).convert("RGB")).tobytes()]
    assert sorted(changed) == sorted(manifest["edited_images"])  # the edited views carry their edits


@pytest.mark.slow
def test_images_outside_the_capture_folder_are_edited_and_exported_without_touching_the_originals(tmp_path) -> None:
    """nerfstudio allows absolute and ``../`` image paths: the job trains on them, and the exported capture holds
    copies under ``external/`` that its camera file points at, never a write onto the user's originals."""
    layouts.write_instant_ngp(tmp_path / "data")
    transforms_path = tmp_path / "data" / "transforms.json"
    transforms = json.loads(transforms_path.read_text())
    (tmp_path / "elsewhere").mkdir()
    for index, frame in enumerate(transforms["frames"]):
        if index % 2 == 0:  # half the photos live in a sibling folder, named two ways
            moved = tmp_path / "elsewhere" / Path(frame["file_path"]).name
            (tmp_path / "data" / frame["file_path"]).rename(moved)
            frame["file_path"] = str(moved) if index % 4 == 0 else f"../elsewhere/{moved.name}"
    transforms_path.write_text(json.dumps(transforms))
    before = {path: path.read_bytes() for path in tmp_path.rglob("*.jpg")}
    job = tmp_path / "job"
    completed = subprocess.run(
        [sys.executable, "-m", "backend", "edit", "--data", str(tmp_path / "data"), "--prompt", "make it blue",
         "--output", str(job), "--editor", "tiny", "--tiny-nerf", "--reconstruction-steps", "20", "--steps", "8",
         "--edit-every-n-steps", "2", "--ddim-steps", "2", "--no-lpips", "--device", "cpu", "--no-geometry",
         "--quiet"], capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert {path: path.read_bytes() for path in before} == before  # no original was written over
    exported_folder = job / json.loads((job / "manifest.json").read_text())["edited_capture"]["folder"]
    assert exported_folder.resolve().is_relative_to(job.resolve())
    exported = capture.read_capture(exported_folder)
    paths = [frame.file_path for frame in exported.frames]
    assert sum(path.startswith("external/") for path in paths) == len(paths) // 2
    for frame in exported.frames:
        copy = exported_folder / frame.file_path
        assert copy.is_file() and copy.resolve().is_relative_to(exported_folder.resolve())
    changed = [frame for frame in exported.frames if frame.file_path.startswith("external/")
               and (exported_folder / frame.file_path).read_bytes() not in before.values()]
    assert changed  # the moved photos were edited too, and their edits are the copies
