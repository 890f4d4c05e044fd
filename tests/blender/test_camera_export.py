"""Exported intrinsics/extrinsics project scene points exactly where Blender does (world_to_camera_view)."""

from __future__ import annotations

import math
from types import ModuleType

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Vector

pytestmark = pytest.mark.timeout(120)

# (lens mm, sensor fit, sensor w, sensor h, res x, res y, percentage, shift x, shift y, pixel aspect x, y, scale)
CASES = [
    (50.0, "AUTO", 36.0, 24.0, 640, 480, 100, 0.0, 0.0, 1.0, 1.0, 1.0),
    (35.0, "AUTO", 36.0, 24.0, 480, 640, 100, 0.1, -0.2, 1.0, 1.0, 1.0),  # portrait: auto fit goes vertical
    (85.0, "HORIZONTAL", 36.0, 24.0, 320, 480, 50, -0.15, 0.05, 1.0, 1.0, 1.0),
    (24.0, "VERTICAL", 36.0, 24.0, 800, 450, 100, 0.3, 0.2, 1.0, 1.0, 1.0),
    (18.0, "VERTICAL", 23.5, 15.6, 300, 500, 100, -0.05, -0.3, 1.0, 1.0, 1.0),
    (50.0, "AUTO", 36.0, 24.0, 640, 480, 100, 0.2, 0.1, 2.0, 1.0, 1.0),  # wide pixels
    (40.0, "AUTO", 36.0, 24.0, 500, 520, 100, 0.1, 0.25, 1.0, 1.5, 1.0),  # tall pixels flip the auto fit
    (70.0, "HORIZONTAL", 30.0, 20.0, 333, 222, 75, 0.0, 0.4, 1.2, 1.0, 2.5),  # scaled camera object
]


def _camera(scene: bpy.types.Scene, case: tuple) -> bpy.types.Object:
    lens, fit, sw, sh, rx, ry, pct, sx, sy, ax, ay, scale = case
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_fit, data.sensor_width, data.sensor_height = lens, fit, sw, sh
    data.shift_x, data.shift_y = sx, sy
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    obj.location = (3.0, -4.0, 2.0)
    obj.rotation_euler = Euler((math.radians(70), math.radians(5), math.radians(35)))
    obj.scale = (scale, scale, scale)
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = rx, ry, pct
    render.pixel_aspect_x, render.pixel_aspect_y = ax, ay
    bpy.context.view_layer.update()
    return obj


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1].lower()}-{c[4]}x{c[5]}-asp{c[9]}x{c[10]}" for c in CASES])
def test_projection_matches_world_to_camera_view(addon: ModuleType, scene: bpy.types.Scene, case: tuple) -> None:
    cams = addon.bpy_shell.cameras
    obj = _camera(scene, case)
    k = cams.camera_intrinsics(obj, scene)
    c2w = np.array(cams.camera_to_world(obj))
    width, height = k.w, k.h
    assert (width, height) == (case[4] * case[6] // 100, case[5] * case[6] // 100)

    rng = np.random.default_rng(0)
    # Sample points inside Blender's own view frame (its corners include shift, fit and pixel aspect) at depths
    # 1..30, then compare Blender's projection with the exported pinhole model.
    frame = np.array([tuple(v) for v in obj.data.view_frame(scene=scene)])  # camera space, one depth
    rotation, origin = c2w[:3, :3], c2w[:3, 3]
    compared = 0
    for _ in range(100):
        a, b = rng.uniform(0.02, 0.98, size=2)
        top = frame[0] * a + frame[3] * (1 - a)  # view_frame order: top-right, bottom-right, bottom-left, top-left
        bottom = frame[1] * a + frame[2] * (1 - a)
        local = (top * b + bottom * (1 - b)) * rng.uniform(1, 30) / -frame[0][2]
        world = rotation @ local + origin
        ndc = world_to_camera_view(scene, obj, Vector(world))
        assert 0 <= ndc.x <= 1 and 0 <= ndc.y <= 1
        u_blender, v_blender = ndc.x * width, (1 - ndc.y) * height
        cam = rotation.T @ (world - origin)
        u = k.fl_x * cam[0] / -cam[2] + k.cx
        v = k.cy - k.fl_y * cam[1] / -cam[2]
        assert abs(u - u_blender) < 0.01 and abs(v - v_blender) < 0.01, (u, v, u_blender, v_blender)
        assert ndc.z == pytest.approx(-cam[2], rel=1e-5)
        compared += 1
    assert compared == 100


def test_transform_matrix_is_matrix_world_without_scale(addon: ModuleType, scene: bpy.types.Scene) -> None:
    obj = _camera(scene, CASES[-1])
    c2w = np.array(addon.bpy_shell.cameras.camera_to_world(obj))
    world = np.array(obj.matrix_world)
    np.testing.assert_allclose(c2w[:3, 3], world[:3, 3], atol=1e-6)
    np.testing.assert_allclose(c2w[:3, :3] * 2.5, world[:3, :3], atol=1e-5)
    np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-6)


def test_orthographic_camera_is_refused_by_name(addon: ModuleType, scene: bpy.types.Scene) -> None:
    obj = _camera(scene, CASES[0])
    obj.data.type = "ORTHO"
    obj.name = "TopView"
    with pytest.raises(addon.bpy_shell.cameras.CameraError, match="TopView.*perspective"):
        addon.bpy_shell.cameras.camera_intrinsics(obj, scene)


def test_intrinsics_applied_to_a_camera_project_back_identically(addon: ModuleType, scene: bpy.types.Scene) -> None:
    """blender_from_intrinsics is the exact inverse (capture import relies on it), including pixel aspect."""
    from blender_addon.core.camera_model import Intrinsics

    cams = addon.bpy_shell.cameras
    wanted = Intrinsics(fl_x=612.5, fl_y=540.25, cx=301.0, cy=251.5, w=640, h=480)
    obj = _camera(scene, CASES[0])
    settings = cams.apply_intrinsics(obj, addon.core.camera_model.Intrinsics(**wanted.__dict__))
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = settings.pixel_aspect_x, settings.pixel_aspect_y
    got = cams.camera_intrinsics(obj, scene, (640, 480))
    for name in ("fl_x", "fl_y", "cx", "cy"):
        assert getattr(got, name) == pytest.approx(getattr(wanted, name), abs=1e-4), name  # Blender stores float32
