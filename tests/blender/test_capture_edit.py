"""Editing real photos: an imported capture is uploaded as-is, the preview can follow the active camera, and the
edited photos replace the originals on the capture's image planes."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

import protocol
from tests.blender.helpers import pump_until
from tests.blender.scripted_backend import ScriptedBackend, ply_bytes
from tests.blender.test_capture_roundtrip import make_capture, write_png

pytestmark = pytest.mark.timeout(180)


def test_capture_upload_preview_camera_and_edited_photos(addon: ModuleType, scene: bpy.types.Scene,
                                                         tmp_path: Path) -> None:
    make_capture(tmp_path / "capture")
    assert bpy.ops.in2n.import_capture(filepath=str(tmp_path / "capture" / "transforms.json"), display="PLANES") == {"FINISHED"}
    edited = tmp_path / "edited.png"
    write_png(edited, np.full((48, 64, 3), 7, np.uint8))
    png = edited.read_bytes()
    backend = ScriptedBackend({
        "pointcloud.ply": ("pointcloud", ply_bytes(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))),
        "edited/view_a.png": ("image", png, {"camera_index": 1}),  # matched by metadata
        "edited/images/frame_00004.png": ("image", png),  # matched by the photo's file name
    })
    backend.gate.clear()
    try:
        protocol.write_connection_file(tmp_path / "c.json", backend.info)
        settings = scene.in2n
        settings.connection_file, settings.instruction = str(tmp_path / "c.json"), "make it snowy"
        bpy.ops.in2n.connect()
        rt = addon.bpy_shell.runtime.get()
        pump_until(addon, lambda: rt.state.connection == "connected")
        assert bpy.ops.in2n.edit() == {"FINISHED"}
        pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state == "editing")

        # the photos were uploaded untouched (their files, as PNGs), each with its own camera
        begin, images = next(iter(backend.scenes.values()))
        assert [info.encoding for info in begin.images] == ["png"] * 5
        assert images[2].shape[:2] == (64, 96)
        photo = tmp_path / "capture" / "images" / "frame_00003.png"
        assert begin.images[2].encoded_bytes == photo.stat().st_size
        assert [c.name for c in begin.cameras] == [f"frame_0000{i}" for i in range(1, 6)]

        # the preview follows the active camera (scaled to the preview size)
        scene.camera = bpy.data.objects["frame_00003"]  # the 96x64 photo with fl 110
        settings.preview_max_side = 32
        assert bpy.ops.in2n.preview_from_camera() == {"FINISHED"}
        pump_until(addon, lambda: bool(backend.preview_requests))
        camera = backend.preview_requests[-1].preview.camera
        assert (camera.w, camera.h) == (32, 21) and camera.fl_x == pytest.approx(110.0 / 3, abs=1e-3)
        assert camera.cx == pytest.approx(16.0, abs=1e-3)

        backend.gate.set()
        pump_until(addon, lambda: rt.state.job.state == "done")
        settings.import_textures, settings.import_mesh = True, False
        assert bpy.ops.in2n.import_result() == {"FINISHED"}
        pump_until(addon, lambda: bool(rt.imported))
        assert any("Edited photos on 2 image plane(s)" in r.message for r in rt.reports)

        def plane_image(camera_name: str) -> str:
            plane = next(c for c in bpy.data.objects[camera_name].children if c.get("in2n_image_plane"))
            node = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
            return Path(node.image.filepath).name

        assert plane_image("frame_00002") == "view_a.png"
        assert plane_image("frame_00004") == "frame_00004.png" and "edited" in \
            next(c for c in bpy.data.objects["frame_00004"].children).active_material.node_tree.nodes["Image Texture"].image.filepath
        assert plane_image("frame_00001") == "frame_00001.png"  # untouched: still the original photo
    finally:
        backend.stop()
