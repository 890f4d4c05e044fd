"""The sidebar panel (3D viewport, tab "IN2N"): backend, scene source, edit settings, preview, result."""

from __future__ import annotations

import bpy

from . import runtime
from .cameras import collection_cameras

TAB = "IN2N"


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = TAB


class IN2N_PT_main(_Base, bpy.types.Panel):
    bl_label = "Instruct-NeRF2NeRF"
    bl_idname = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        rt = runtime.peek()
        state = rt.state if rt is not None else None
        box = layout.box()
        box.label(text=state.status_line() if state else "Not connected",
                  icon="LINKED" if state and state.connection == "connected" else "UNLINKED")
        if state and state.last_error:
            box.label(text=state.last_error, icon="ERROR")
        layout.prop(settings, "connection_mode", expand=True)
        if settings.connection_mode == "FILE":
            layout.prop(settings, "connection_file")
        else:
            row = layout.row(align=True)
            row.prop(settings, "host")
            row.prop(settings, "port")
            layout.prop(settings, "key")
        row = layout.row(align=True)
        row.operator("in2n.connect", icon="PLUGIN")
        row.operator("in2n.disconnect")
        row = layout.row(align=True)
        row.operator("in2n.start_local_backend", icon="PLAY")
        row.operator("in2n.stop_local_backend", text="", icon="X")


class IN2N_PT_scene(_Base, bpy.types.Panel):
    bl_label = "Scene source"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        layout.prop(settings, "source", expand=True)
        layout.prop(settings, "camera_collection")
        layout.label(text=f"{len(collection_cameras(settings.camera_collection))} cameras")
        if settings.source == "RENDER":
            col = layout.column(align=True)
            col.prop(settings, "orbit_count")
            col.prop(settings, "orbit_elevation")
            col.prop(settings, "orbit_distance")
            layout.operator("in2n.generate_orbit", icon="CAMERA_DATA")
            row = layout.row(align=True)
            row.prop(settings, "resolution_x")
            row.prop(settings, "resolution_y")
            layout.prop(settings, "render_samples")
            layout.label(text=f"Engine: {context.scene.render.engine.replace('BLENDER_', '').title()}")
        else:
            layout.prop(settings, "capture_path")
            layout.operator("in2n.import_capture", icon="IMPORT")
        layout.operator("in2n.export_transforms", icon="EXPORT")


class IN2N_PT_edit(_Base, bpy.types.Panel):
    bl_label = "Edit"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        layout.prop(settings, "instruction", text="")
        col = layout.column(align=True)
        col.prop(settings, "guidance_scale")
        col.prop(settings, "image_guidance_scale")
        col = layout.column(align=True)
        col.prop(settings, "reconstruction_steps")
        col.prop(settings, "total_steps")
        col.prop(settings, "edit_every_n_steps")
        col.prop(settings, "images_per_edit")
        col.prop(settings, "ddim_steps")
        layout.prop(settings, "memory_mode")
        row = layout.row(align=True)
        row.prop(settings, "preview_rate")
        row.prop(settings, "preview_max_side")
        row = layout.row(align=True)
        row.scale_y = 1.5
        row.operator("in2n.edit", icon="SHADERFX")
        row.operator("in2n.cancel", icon="CANCEL")
        rt = runtime.peek()
        if rt is not None and (rt.state.job is not None or rt.state.busy):
            layout.progress(factor=rt.state.progress_fraction(), type="BAR", text=rt.state.progress_text())
            if rt.state.job is not None:
                layout.label(text=f"Job {rt.state.job.job_id}")


class IN2N_PT_preview(_Base, bpy.types.Panel):
    bl_label = "Preview"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        image = bpy.data.images.get(runtime.PREVIEW_IMAGE)
        if image is None:
            layout.label(text="No preview yet")
            layout.operator("in2n.preview_from_camera", icon="CAMERA_DATA")
            return
        layout.template_icon(icon_value=layout.icon(image), scale=8.0)  # layout.icon() ensures the preview exists
        rt = runtime.peek()
        kept = len(rt.state.history) if rt is not None else 0
        layout.prop(settings, "preview_history", text=f"History (0 = live, {kept} kept)")
        layout.operator("in2n.preview_from_camera", icon="CAMERA_DATA")
        layout.label(text=f"Step {image.get('in2n_step', '?')}")


class IN2N_PT_result(_Base, bpy.types.Panel):
    bl_label = "Result"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        row = layout.row(align=True)
        row.prop(settings, "import_mesh", toggle=True)
        row.prop(settings, "import_pointcloud", toggle=True)
        layout.prop(settings, "import_textures")
        layout.operator("in2n.import_result", icon="IMPORT")


CLASSES = (IN2N_PT_main, IN2N_PT_scene, IN2N_PT_edit, IN2N_PT_preview, IN2N_PT_result)
