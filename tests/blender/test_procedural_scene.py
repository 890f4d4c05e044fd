"""The procedural benchmark/demo scene (demo/procedural_scene.py) with the real bpy module and Cycles."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender_addon.core.camera_model import project
from capture import read_transforms as read_capture
from demo import procedural_scene as ps

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def built() -> ps.BuiltScene:
    # keep this process's preferences and add-ons (other tests share the Blender process)
    return ps.build_scene(settings=ps.RenderSettings(samples=2, threads=2), factory_reset=False)


def read_pixels(path: Path) -> np.ndarray:
    """``H W 3`` floats, top row first (Blender stores images bottom-up)."""
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1, :, :3]


def base_color(name: str) -> tuple[float, ...]:
    material = bpy.data.objects[name].data.materials[0]
    return tuple(material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value)[:3]


def test_scene_has_the_coloured_objects_on_a_ground_and_the_edit_recolours_one(built: ps.BuiltScene) -> None:
    names = {spec.name for spec in built.spec.objects}
    assert names | {"Ground"} <= set(bpy.data.objects.keys())
    assert bpy.context.scene.render.engine == "CYCLES" and not bpy.context.scene.cycles.use_denoising
    sphere = next(spec for spec in built.spec.objects if spec.name == "Sphere")
    assert base_color("Sphere") == pytest.approx(sphere.color)
    ps.recolor_object("Sphere", (0.1, 0.25, 0.9))
    assert base_color("Sphere") == pytest.approx((0.1, 0.25, 0.9))
    assert base_color("Cube") == pytest.approx(next(s.color for s in built.spec.objects if s.name == "Cube"))
    with pytest.raises(KeyError, match="Teapot"):
        ps.recolor_object("Teapot", (1, 1, 1))


def test_orbit_cameras_look_at_the_target_from_the_requested_elevations(built: ps.BuiltScene) -> None:
    poses = ps.orbit_poses(6, target=built.spec.target, distance=4.0, elevations_deg=(20.0, 50.0))
    cameras = ps.add_cameras("cam", poses)
    assert [c.name for c in cameras] == [f"cam_{i:03d}" for i in range(6)]
    target = np.asarray(built.spec.target)
    for index, camera in enumerate(cameras):
        intrinsics = ps.camera_intrinsics(camera, 40, 30)
        assert intrinsics.fl_x == pytest.approx(camera.data.lens / camera.data.sensor_width * 40)
        matrix = [list(row) for row in camera.matrix_world]
        u, v, depth = project(intrinsics, matrix, tuple(target))
        assert (u, v) == pytest.approx((20.0, 15.0), abs=1e-4) and depth == pytest.approx(4.0, abs=1e-4)
        offset = np.asarray(camera.matrix_world.translation) - target
        elevation = math.degrees(math.asin(offset[2] / np.linalg.norm(offset)))
        assert elevation == pytest.approx((20.0, 50.0)[index % 2], abs=1e-3)


def test_renders_are_deterministic_and_show_the_edit_where_the_object_projects(built: ps.BuiltScene,
                                                                             tmp_path: Path) -> None:
    camera = ps.add_cameras("cam", ps.orbit_poses(1, target=built.spec.target, distance=4.5,
                                                  elevations_deg=(30.0,)))[0]
    size = 32
    first = ps.render_camera(camera, tmp_path / "a.png", size, size)
    second = ps.render_camera(camera, tmp_path / "b.png", size, size)
    np.testing.assert_array_equal(read_pixels(first), read_pixels(second))  # fixed Cycles seed: identical pixels
    ps.recolor_object("Sphere", (0.1, 0.25, 0.9))
    edited = ps.render_camera(camera, tmp_path / "sub" / "edited.png", size, size)

    sphere = next(spec for spec in built.spec.objects if spec.name == "Sphere")
    u, v, _ = project(ps.camera_intrinsics(camera, size, size), [list(r) for r in camera.matrix_world],
                      sphere.location)
    row, column = int(v), int(u)
    before, after = read_pixels(first)[row, column], read_pixels(edited)[row, column]
    assert before[0] > before[2] + 0.2 and before[1] > before[2] + 0.2  # yellow
    assert after[2] > after[0] + 0.2  # blue
    changed = np.abs(read_pixels(first) - read_pixels(edited)).max(-1) > 0.05
    assert 0.01 < changed.mean() < 0.5  # the sphere changed, most of the image did not


def test_transforms_json_round_trips_through_the_addon_reader(built: ps.BuiltScene, tmp_path: Path) -> None:
    cameras = ps.add_cameras("cam", ps.orbit_poses(3, target=built.spec.target, distance=4.0,
                                                   elevations_deg=(25.0,)))
    paths = [f"images/{c.name}.png" for c in cameras]
    ps.write_transforms(tmp_path / "transforms.json", cameras, paths, 64, 48)
    capture = read_capture(tmp_path / "transforms.json")
    assert [frame.file_path for frame in capture.frames] == paths
    for frame, camera in zip(capture.frames, cameras):
        np.testing.assert_allclose(frame.transform_matrix, np.asarray(camera.matrix_world), atol=1e-6)
        assert (frame.intrinsics.w, frame.intrinsics.h, frame.intrinsics.cx, frame.intrinsics.cy) == (64, 48, 32, 24)
    with pytest.raises(ValueError, match="file paths"):
        ps.write_transforms(tmp_path / "bad.json", cameras, paths[:2], 64, 48)


def test_render_dataset_cli_writes_every_split(tmp_path: Path) -> None:
    # its own interpreter: the CLI resets Blender to factory settings
    environment = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")}
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.consistency.render_dataset", "--out", str(tmp_path / "data"),
         "--train-views", "3", "--heldout-views", "2", "--size", "16", "--samples", "2", "--threads", "2"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 10 and summary["edit"]["object"] == "Sphere"
    data = tmp_path / "data"
    assert json.loads((data / "dataset.json").read_text()) == summary
    for split, count in (("original", 3), ("edited_gt", 3), ("heldout_original", 2), ("heldout_edited", 2)):
        capture = read_capture(data / split / "transforms.json")
        assert len(capture.frames) == count
        assert all((data / split / frame.file_path).is_file() for frame in capture.frames)
    train = read_capture(data / "original" / "transforms.json").frames
    heldout = read_capture(data / "heldout_original" / "transforms.json").frames
    same_cameras = read_capture(data / "edited_gt" / "transforms.json").frames
    assert [f.transform_matrix for f in train] == [f.transform_matrix for f in same_cameras]
    for frame in heldout:  # held-out cameras are new viewpoints
        assert all(np.abs(np.subtract(frame.transform_matrix, t.transform_matrix)).max() > 0.1 for t in train)
