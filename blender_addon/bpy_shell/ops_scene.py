"""Operators for the scene source: orbit cameras, capture import, transforms.json export."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.protocol_link import capture as capture_format
from . import cameras as cams
from . import capture as capture_io
from . import render, runtime
from .ops_edit import ModalTask
from .render_session import RenderSession
from .tasks import Task


class IN2N_OT_generate_orbit(bpy.types.Operator):
    """Add cameras around the selected objects (a ring, or a seeded sphere as BlenderNeRF samples it) and use them
    as the camera source; generating again replaces them. Adjust the cameras in the redo panel"""

    bl_idname = "in2n.generate_orbit"
    bl_label = "Generate orbit cameras"
    bl_options = {"REGISTER", "UNDO"}

    count: IntProperty(name="Views", default=8, min=2, max=512)  # type: ignore[valid-type]
    sampling: EnumProperty(  # type: ignore[valid-type]
        name="Sampling", items=[("RING", "Ring", "Evenly spaced in azimuth at one elevation (alternating a little)"),
                                ("SPHERE", "Sphere", "Spread over a sphere, from a seed")], default="RING")
    elevation: FloatProperty(name="Elevation", default=25.0, min=-89.0, max=89.0)  # type: ignore[valid-type]
    distance: FloatProperty(name="Distance", default=2.5, min=0.5, max=100.0,  # type: ignore[valid-type]
                            description="Camera distance in bounding-sphere radii")
    seed: IntProperty(name="Seed", default=0, min=0)  # type: ignore[valid-type]
    upper_hemisphere: BoolProperty(name="Upper hemisphere", default=True,  # type: ignore[valid-type]
                                   description="Sphere sampling above the objects' horizon only")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not [obj for obj in context.selected_objects if obj.type not in ("CAMERA", "LIGHT", "EMPTY")]:
            cls.poll_message_set("Select the objects to orbit around")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        settings = context.scene.in2n  # the panel's values are the starting point of the redo panel
        self.count, self.elevation, self.distance = settings.orbit_count, settings.orbit_elevation, settings.orbit_distance
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.in2n
        try:
            collection = cams.create_orbit(context.scene, list(context.selected_objects), self.count,
                                           elevation_deg=self.elevation, distance_factor=self.distance,
                                           sampling=self.sampling, seed=self.seed,
                                           upper_hemisphere=self.upper_hemisphere)
        except (cams.CameraError, ValueError) as exc:
            self.report({"ERROR"}, f"Generate orbit cameras failed: {exc}")
            return {"CANCELLED"}
        settings.camera_collection, settings.source = collection, "RENDER"
        settings.orbit_count, settings.orbit_elevation, settings.orbit_distance = self.count, self.elevation, self.distance
        self.report({"INFO"}, f"{len(collection.objects)} cameras in '{collection.name}'")
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


class IN2N_OT_export_dataset(ModalTask, bpy.types.Operator, ExportHelper):
    """Write the chosen cameras as a complete nerfstudio dataset (as BlenderNeRF does): their renders at the panel's
    resolution in images/ (rendered without blocking Blender) and transforms.json with matching intrinsics and file
    names; an imported capture is written with its own photos"""

    bl_idname = "in2n.export_dataset"
    bl_label = "Export dataset"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not cams.collection_cameras(context.scene.in2n.camera_collection):
            cls.poll_message_set("Choose a camera collection with at least one camera")
            return False
        rt = runtime.peek()
        if rt is not None and rt.task is not None and rt.task.running:
            cls.poll_message_set(f"{rt.task.name} is still running")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene, settings = context.scene, context.scene.in2n
        objects = cams.collection_cameras(settings.camera_collection)
        path = Path(self.filepath)
        if path.suffix != ".json":
            path = path / "transforms.json"
        try:
            if settings.source == "CAPTURE":
                written = capture_io.export_capture(scene, objects, path)
                self.report({"INFO"}, f"Wrote {len(objects)} cameras to {written}")
                return {"FINISHED"}
            size = (settings.resolution_x, settings.resolution_y)
            shots = render.render_shots(objects, path.parent / "images")
            session = RenderSession(scene, shots, size[0], size[1], settings.render_samples,
                                    interactive=context.window is not None and not bpy.app.background)
        except (cams.CameraError, OSError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}

        def write(task: Task) -> None:
            names = [shot.path.relative_to(path.parent).as_posix() for shot in shots]
            written = capture_io.export_capture(scene, objects, path, size, file_paths=names)
            runtime.report(runtime.get(), runtime.ss.Report("INFO", f"Wrote a dataset of {len(shots)} views: {written}"))

        return self.start(context, Task("Export dataset", write, render=session))

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return ExportHelper.invoke(self, context, event)


CLASSES = (IN2N_OT_generate_orbit, IN2N_OT_import_capture, IN2N_OT_export_dataset)
