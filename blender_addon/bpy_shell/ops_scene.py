"""Operators for the scene source: orbit cameras, capture import, transforms.json export."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.protocol_link import capture as capture_format
from . import cameras as cams
from . import capture as capture_io


class IN2N_OT_generate_orbit(bpy.types.Operator):
    """Add a collection of cameras orbiting the selected objects and use it as the camera source"""

    bl_idname = "in2n.generate_orbit"
    bl_label = "Generate orbit cameras"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not [obj for obj in context.selected_objects if obj.type not in ("CAMERA", "LIGHT", "EMPTY")]:
            cls.poll_message_set("Select the objects to orbit around")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.in2n
        try:
            collection = cams.create_orbit(context.scene, list(context.selected_objects), settings.orbit_count,
                                           elevation_deg=settings.orbit_elevation,
                                           distance_factor=settings.orbit_distance)
        except (cams.CameraError, ValueError) as exc:
            self.report({"ERROR"}, f"Generate orbit cameras failed: {exc}")
            return {"CANCELLED"}
        settings.camera_collection, settings.source = collection, "RENDER"
        self.report({"INFO"}, f"Added {len(collection.objects)} cameras in '{collection.name}'")
        return {"FINISHED"}


class IN2N_OT_import_capture(bpy.types.Operator, ImportHelper):
    """Import a capture as cameras with its photos: nerfstudio transforms.json, NeRF-synthetic / BlenderNeRF
    transforms_train.json, instant-ngp transforms.json, or a COLMAP model (pick its cameras.bin / cameras.txt)"""

    bl_idname = "in2n.import_capture"
    bl_label = "Import capture"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json;*.bin;*.txt", options={"HIDDEN"})  # type: ignore[valid-type]
    display: EnumProperty(  # type: ignore[valid-type]
        name="Show photos as", items=[("PLANES", "Image planes", ""), ("BACKGROUND", "Camera backgrounds", ""),
                                      ("NONE", "Nothing", "")], default="PLANES")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            collection = capture_io.import_capture(context.scene, self.filepath, self.display)
        except (capture_format.CaptureError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Import capture failed: {exc}")
            return {"CANCELLED"}
        settings = context.scene.in2n
        settings.camera_collection, settings.source, settings.capture_path = collection, "CAPTURE", self.filepath
        cameras = cams.collection_cameras(collection)
        layout = json.loads(collection["in2n_capture"])["layout"]
        self.report({"INFO"}, f"Imported {len(cameras)} cameras ({layout} layout) into '{collection.name}'")
        return {"FINISHED"}


class IN2N_OT_export_transforms(bpy.types.Operator, ExportHelper):
    """Write the chosen cameras as a nerfstudio transforms.json (no images)"""

    bl_idname = "in2n.export_transforms"
    bl_label = "Export transforms.json"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not cams.collection_cameras(context.scene.in2n.camera_collection):
            cls.poll_message_set("Choose a camera collection with at least one camera")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        objects = cams.collection_cameras(context.scene.in2n.camera_collection)
        try:
            path = capture_io.export_capture(context.scene, objects, Path(self.filepath))
        except (cams.CameraError, OSError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(objects)} cameras to {path}")
        return {"FINISHED"}


CLASSES = (IN2N_OT_generate_orbit, IN2N_OT_import_capture, IN2N_OT_export_transforms)
