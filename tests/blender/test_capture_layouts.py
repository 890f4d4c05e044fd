"""Import capture in the add-on for every layout the shared reader knows (datasets written by independent code in
tests/helpers/layouts.py): the Blender cameras see known 3D points where each format's own convention puts them, and a
BlenderNeRF-style export of Blender cameras imports back to the same matrix_world and lens."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from tests.helpers import layouts

pytestmark = pytest.mark.timeout(120)
POINTS = layouts.CENTER + np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.25, 0.15, -0.1]])


def pixels(scene: bpy.types.Scene, camera: bpy.types.Object, points: np.ndarray, size: tuple[int, int],
           aspect: tuple[float, float]) -> np.ndarray:
    """Where Blender's own projection puts world points, in pixels from the top-left corner."""
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = aspect
    bpy.context.view_layer.update()
    ndc = [world_to_camera_view(scene, camera, Vector(point.tolist())) for point in points]
    return np.array([[p.x * size[0], (1 - p.y) * size[1]] for p in ndc])


@pytest.mark.parametrize("layout", ["nerf-synthetic", "instant-ngp", "colmap-binary", "colmap-text"])
def test_every_layout_imports_cameras_that_see_points_where_the_format_says(addon: ModuleType, scene: bpy.types.Scene,
                                                                            tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "data"
    if layout == "nerf-synthetic":
        written, pick = layouts.write_nerf_synthetic(folder), folder / "transforms_train.json"
    elif layout == "instant-ngp":
        written, pick = layouts.write_instant_ngp(folder, suffix=".png"), folder / "transforms.json"
    else:
        written = layouts.write_colmap(folder, binary=layout == "colmap-binary")
        pick = folder / "sparse" / "0" / ("cameras.bin" if layout == "colmap-binary" else "cameras.txt")
    assert bpy.ops.in2n.import_capture(filepath=str(pick), display="PLANES") == {"FINISHED"}
    settings = scene.in2n
    info = json.loads(settings.camera_collection["in2n_capture"])
    assert info["layout"] == layout.split("-binary")[0].split("-text")[0]
    cameras = addon.bpy_shell.cameras.collection_cameras(settings.camera_collection)
    assert len(cameras) == len(written.c2w)  # held-out splits are not among the cameras the edit uploads
    applied = np.asarray(info["extra"]["applied_transform"]) if layout.startswith("colmap") else np.eye(4)[:3]
    fx, fy = written.focal
    cx, cy = written.principal
    for index, (camera, c2w) in enumerate(zip(cameras, written.c2w)):
        world = POINTS @ applied[:, :3].T + applied[:, 3]  # the points in the imported (re-oriented) world
        if layout.startswith("colmap"):
            rotation, translation = layouts.colmap_extrinsics(c2w)
            cam = POINTS @ rotation.T + translation
            focal_y = fy if index % 2 == 0 else fx
            expected = np.c_[fx * cam[:, 0] / cam[:, 2] + cx, focal_y * cam[:, 1] / cam[:, 2] + cy]
        else:
            cam = (np.linalg.inv(c2w) @ np.c_[POINTS, np.ones(len(POINTS))].T).T[:, :3]
            expected = np.c_[fx * cam[:, 0] / -cam[:, 2] + cx, -fy * cam[:, 1] / -cam[:, 2] + cy]
        size = tuple(camera[addon.bpy_shell.cameras.PROP_SIZE])
        aspect = tuple(camera[addon.bpy_shell.cameras.PROP_ASPECT])
        np.testing.assert_allclose(pixels(scene, camera, world, size, aspect), expected, atol=2e-3, err_msg=str(index))
        photo = next(child for child in camera.children if child.get("in2n_image_plane"))
        texture = next(n for n in photo.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
        assert Path(texture.image.filepath).is_file()
    if layout == "nerf-synthetic":  # the two test views are shown in their own collection, not edited
        held_out = bpy.data.collections[f"{settings.camera_collection.name} held-out"]
        assert len([obj for obj in held_out.objects if obj.type == "CAMERA"]) == 2


def test_a_blendernerf_style_export_imports_back_to_the_same_cameras(addon: ModuleType, scene: bpy.types.Scene,
                                                                      tmp_path: Path) -> None:
    """Written the way BlenderNeRF writes a scene's cameras: camera_angle_x from lens and sensor, the camera's
    matrix_world as transform_matrix, images in train/ named without extension in the file."""
    lenses = [35.0, 50.0, 24.0]
    frames = []
    originals = []
    for index, lens in enumerate(lenses):
        data = bpy.data.cameras.new(f"cam{index}")
        data.lens, data.sensor_width, data.sensor_fit = lens, 36.0, "HORIZONTAL"
        obj = bpy.data.objects.new(f"cam{index}", data)
        scene.collection.objects.link(obj)
        obj.location = (3 * math.cos(index), 3 * math.sin(index), 1.0 + index * 0.2)
        obj.rotation_euler = (1.1, 0.05 * index, 1.57 + index)
        bpy.context.view_layer.update()
        originals.append((np.array(obj.matrix_world), lens))
        layouts.write_png((tmp_path / "train").mkdir(exist_ok=True) or tmp_path / "train" / f"r_{index}.png",
                          np.zeros((30, 40, 3), np.uint8))
        frames.append({"file_path": f"./train/r_{index}", "camera_angle_x": 2 * math.atan(36.0 / 2 / lens),
                       "transform_matrix": np.array(obj.matrix_world).tolist()})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": frames}))  # per-frame angles
    assert bpy.ops.in2n.import_capture(filepath=str(tmp_path / "transforms_train.json"), display="NONE") == {"FINISHED"}
    imported = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    for camera, (matrix, lens) in zip(imported, originals):
        np.testing.assert_allclose(np.array(camera.matrix_world), matrix, atol=1e-5)
        assert camera.data.lens / camera.data.sensor_width * 36.0 == pytest.approx(lens, rel=1e-5)
