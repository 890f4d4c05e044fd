"""Existing captures: transforms.json -> Blender cameras (+ photos) -> transforms.json gives the same capture."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view

from blender_addon.core.poses import look_at

pytestmark = pytest.mark.timeout(120)


def write_png(path: Path, array: np.ndarray) -> None:
    """``H W 3`` uint8 (row 0 = top) to a PNG, through Blender."""
    height, width = array.shape[:2]
    image = bpy.data.images.new(path.stem, width, height, alpha=True)
    rgba = np.concatenate([array, np.full((height, width, 1), 255, np.uint8)], axis=2)[::-1]
    image.pixels.foreach_set((rgba.astype(np.float32) / 255).ravel())
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def make_capture(folder: Path) -> dict:
    """A capture with shared intrinsics, per-frame overrides (another size, off-centre principal point, non-square
    pixels), 3x4 and 4x4 matrices, distortion and extra keys: everything a real nerfstudio capture may hold."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    frames = []
    for index in range(5):
        angle = 2 * np.pi * index / 5
        eye = np.array([4 * np.cos(angle), 4 * np.sin(angle), 1.5]) + 10.0
        pose = look_at(eye, np.array([10.0, 10.0, 10.0])).tolist()
        frame = {"file_path": f"images/frame_{index + 1:05d}.png", "transform_matrix": pose}
        if index == 1:
            frame.update(fl_x=300.0, fl_y=280.0, cx=70.5, cy=40.25)  # non-square pixels, shifted centre
        if index == 2:
            frame.update(w=96, h=64, fl_x=110.0, fl_y=110.0, cx=48.0, cy=32.0)  # another image size
            frame["transform_matrix"] = pose[:3]
        if index == 3:
            frame["mask_path"] = "masks/frame_00004.png"
        frames.append(frame)
        size = (frame.get("h", 48), frame.get("w", 64))
        write_png(folder / frame["file_path"], rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    data = {"camera_model": "OPENCV", "fl_x": 70.0, "fl_y": 70.0, "cx": 32.0, "cy": 24.0, "w": 64, "h": 48,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "applied_transform": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],
            "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(data))
    return data


def resolved(data: dict) -> list[dict]:
    """Per-frame view of a transforms.json (shared values folded in, 3x4 matrices completed)."""
    from capture import parse_capture

    capture = parse_capture(data)
    return [{"file_path": f.file_path, **f.intrinsics.__dict__, "matrix": np.array(f.transform_matrix), **f.extra}
            for f in capture.frames]


def test_import_then_export_reproduces_the_capture(addon: ModuleType, scene: bpy.types.Scene, tmp_path: Path) -> None:
    original = make_capture(tmp_path / "capture")
    assert bpy.ops.in2n.import_capture(filepath=str(tmp_path / "capture" / "transforms.json"), display="PLANES") == {"FINISHED"}
    settings = scene.in2n
    assert settings.source == "CAPTURE" and len(addon.bpy_shell.cameras.collection_cameras(settings.camera_collection)) == 5

    out = tmp_path / "exported.json"
    assert bpy.ops.in2n.export_dataset(filepath=str(out)) == {"FINISHED"}  # a capture: with its own photos
    exported = json.loads(out.read_text())
    assert exported["camera_model"] == "OPENCV"
    assert exported["applied_transform"] == original["applied_transform"]
    before, after = resolved(original), resolved(exported)
    assert [f["file_path"] for f in after] == [f["file_path"] for f in before]
    for a, b in zip(before, after):
        assert (a["w"], a["h"]) == (b["w"], b["h"])
        for key in ("fl_x", "fl_y", "cx", "cy"):
            assert b[key] == pytest.approx(a[key], abs=1e-3), (a["file_path"], key)  # Blender keeps float32
        np.testing.assert_allclose(b["matrix"], a["matrix"], atol=1e-5)
        assert {k: v for k, v in b.items() if k.startswith(("k", "p", "mask"))} == \
               {k: v for k, v in a.items() if k.startswith(("k", "p", "mask"))}
    # shared values are written once at the top level again, not repeated per frame
    assert exported["w"] == 64 and "w" not in exported["frames"][0] and exported["frames"][2]["w"] == 96


def test_imported_cameras_see_the_photos_where_they_were_taken(addon: ModuleType, scene: bpy.types.Scene,
                                                               tmp_path: Path) -> None:
    """Image planes cover each camera's view exactly; the scene resolution follows the capture."""
    make_capture(tmp_path / "capture")
    bpy.ops.in2n.import_capture(filepath=str(tmp_path / "capture" / "transforms.json"), display="PLANES")
    assert (scene.render.resolution_x, scene.render.resolution_y) == (64, 48)
    camera = bpy.data.objects["frame_00001"]
    plane = next(child for child in camera.children if child.get("in2n_image_plane"))
    bpy.context.view_layer.update()
    corners = [plane.matrix_world @ v.co for v in plane.data.vertices]
    projected = sorted((round(p.x, 4), round(p.y, 4)) for p in (world_to_camera_view(scene, camera, c) for c in corners))
    assert projected == [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
    texture = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert Path(texture.image.filepath).name == "frame_00001.png"


def test_camera_backgrounds_and_bad_capture_reported(addon: ModuleType, scene: bpy.types.Scene, tmp_path: Path) -> None:
    make_capture(tmp_path / "capture")
    bpy.ops.in2n.import_capture(filepath=str(tmp_path / "capture" / "transforms.json"), display="BACKGROUND")
    camera = bpy.data.objects["frame_00002"]
    assert camera.data.show_background_images and camera.data.background_images[0].image is not None

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist(), "w": 4}]}))
    with pytest.raises(RuntimeError, match=r"frames\[0\]\.fl_x: missing"):
        bpy.ops.in2n.import_capture(filepath=str(broken))


def test_capture_views_are_uploaded_with_their_own_intrinsics(addon: ModuleType, scene: bpy.types.Scene,
                                                              tmp_path: Path) -> None:
    make_capture(tmp_path / "capture")
    bpy.ops.in2n.import_capture(filepath=str(tmp_path / "capture" / "transforms.json"), display="NONE")
    objects = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    cameras, photos = addon.bpy_shell.render.capture_photos(scene, objects, tmp_path / "capture")
    assert [(c.w, c.h) for c in cameras] == [(64, 48), (64, 48), (96, 64), (64, 48), (64, 48)]
    assert [photo.parent.name for photo in photos] == ["images"] * 5 and all(photo.is_file() for photo in photos)
    assert cameras[1].fl_x == pytest.approx(300.0, abs=1e-3) and cameras[1].fl_y == pytest.approx(280.0, abs=1e-3)
