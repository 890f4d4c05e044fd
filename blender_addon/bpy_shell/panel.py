"""The sidebar panel (3D viewport, tab "IN2N"): backend, scene source, edit settings, try it in 2D, live preview,
snapshots, result."""

from __future__ import annotations

import bpy

from ..core.protocol_link import protocol
from . import images, runtime
from .cameras import collection_cameras
from .ops_steering import suggested_preset

TAB = "IN2N"


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = TAB


def _task_progress(layout: bpy.types.UILayout) -> None:
    rt = runtime.peek()
    if rt is not None and rt.task is not None and rt.task.running:
        layout.progress(factor=rt.task.fraction(), type="BAR", text=rt.task.progress_text())


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
        if state and state.server is not None and state.server.memory_bytes:
            box.label(text=f"{state.server.cpu_count or '?'} CPUs, {state.server.memory_bytes / 2**30:.0f} GiB RAM"
                           + (f", GPU {state.server.gpu_memory_bytes / 2**30:.0f} GiB"
                              if state.server.gpu_memory_bytes else ""))
        if state and state.last_error:
            box.label(text=state.last_error, icon="ERROR")
        layout.prop(settings, "connection_mode", expand=True)
        if settings.connection_mode == "FILE":
            layout.prop(settings, "connection_file")
        else:
            row = layout.row(align=True)
            row.prop(settings, "host")
            row.prop(settings, "port")
            layout.prop(context.window_manager, "in2n_key")
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
            layout.operator("in2n.generate_orbit", icon="CAMERA_DATA")
            row = layout.row(align=True)
            row.prop(settings, "resolution_x")
            row.prop(settings, "resolution_y")
            layout.prop(settings, "render_samples")
            layout.label(text=f"Engine: {context.scene.render.engine.replace('BLENDER_', '').title()}")
        else:
            layout.prop(settings, "capture_path")
            layout.operator("in2n.import_capture", icon="IMPORT")
        layout.operator("in2n.export_dataset", icon="EXPORT")


class IN2N_PT_edit(_Base, bpy.types.Panel):
    bl_label = "Edit"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        layout.prop(settings, "instruction", text="")
        rt = runtime.peek()
        row = layout.row(align=True)
        row.prop(settings, "preset", text="")
        row.operator("in2n.apply_preset", text="Apply").name = settings.preset
        if rt is not None and rt.state.server is not None:
            layout.label(text=f"Suggested for this backend: {suggested_preset(rt.state.server)}", icon="INFO")
        col = layout.column(align=True)
        col.prop(settings, "guidance_scale")
        col.prop(settings, "image_guidance_scale")
        col = layout.column(align=True)
        col.prop(settings, "reconstruction_steps")
        col.prop(settings, "total_steps")
        col.prop(settings, "edit_every_n_steps")
        col.prop(settings, "images_per_edit")
        col.prop(settings, "ddim_steps")
        row = layout.row(align=True)
        row.prop(settings, "snapshot_every")
        row.prop(settings, "snapshot_views", text="Views")
        layout.prop(settings, "memory_mode")
        row = layout.row(align=True)
        row.prop(settings, "preview_rate")
        row.prop(settings, "preview_max_side")
        box = layout.box()
        box.prop(settings, "edit_scope", expand=True)
        if settings.edit_scope == "SELECTED":
            row = box.row(align=True)
            row.prop(settings, "region_margin")
            row.prop(settings, "hide_originals", toggle=True)
            box.prop(settings, "result")
            if settings.result != "GEOMETRY":
                box.prop(settings, "bake_resolution")
        row = box.row(align=True)
        row.prop(settings, "use_depth")
        sub = row.row()
        sub.enabled = settings.use_depth
        sub.prop(settings, "depth_while_editing")
        estimate = rt.state.steering.estimate if rt is not None else None
        row = layout.row(align=True)
        row.operator("in2n.estimate", icon="TIME")
        if estimate is not None and estimate.estimated_s is not None:
            row.label(text=f"about {protocol.format_duration(estimate.estimated_s)} on {estimate.device}")
            if estimate.suggested_preset:
                layout.label(text=f"Hours on this device: preset '{estimate.suggested_preset}' fits it", icon="ERROR")
        row = layout.row(align=True)
        row.scale_y = 1.5
        row.operator("in2n.edit", icon="SHADERFX")
        row.operator("in2n.cancel", icon="CANCEL")
        _task_progress(layout)
        if rt is not None and (rt.state.job is not None or rt.state.busy):
            layout.progress(factor=rt.state.progress_fraction(), type="BAR", text=rt.state.progress_text())
            if rt.state.job is not None:
                layout.label(text=f"Job {rt.state.job.job_id}")


class IN2N_PT_trial(_Base, bpy.types.Panel):
    bl_label = "Try it in 2D"
    bl_parent_id = "IN2N_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        layout.prop(settings, "trial_view", expand=True)
        if settings.trial_view == "TRAINING":
            layout.prop(settings, "trial_view_index")
        layout.prop(settings, "trial_guidance_scales")
        layout.prop(settings, "trial_image_guidance_scales")
        layout.operator("in2n.preview_instruction", icon="IMAGE_DATA")
        rt = runtime.peek()
        preview = rt.state.steering.preview if rt is not None else None
        if preview is None:
            return
        row = layout.row()
        row.label(text=preview.progress_text())
        if not preview.done:
            row.operator("in2n.cancel_preview", text="", icon="CANCEL")
        if preview.grid is None:
            return
        image = bpy.data.images.get(images.GRID_IMAGE)
        if image is not None:
            layout.template_icon(icon_value=layout.icon(image), scale=8.0)
        grid = layout.grid_flow(columns=len(preview.columns), even_columns=True, align=True)
        for image_scale in preview.rows:
            for text_scale in preview.columns:
                chosen = (settings.guidance_scale, settings.image_guidance_scale) == (text_scale, image_scale)
                button = grid.operator("in2n.use_preview_cell", text=f"T {text_scale:g}  I {image_scale:g}",
                                       depress=chosen)
                button.guidance_scale, button.image_guidance_scale = text_scale, image_scale


class IN2N_PT_preview(_Base, bpy.types.Panel):
    bl_label = "Live preview"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        layout.prop(settings, "show_preview_in_camera")
        image = bpy.data.images.get(runtime.PREVIEW_IMAGE)
        if image is not None:
            layout.template_icon(icon_value=layout.icon(image), scale=8.0)  # layout.icon() ensures the preview
            layout.label(text=f"Step {image.get('in2n_step', '?')}")
        else:
            layout.label(text="No preview yet")
        layout.operator("in2n.preview_from_camera", icon="CAMERA_DATA")


class IN2N_PT_snapshots(_Base, bpy.types.Panel):
    bl_label = "Snapshots"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        rt = runtime.peek()
        row = layout.row(align=True)
        row.operator("in2n.refresh_snapshots", icon="FILE_REFRESH", text="Refresh")
        row.prop(settings, "continue_steps", text="")
        row.operator("in2n.continue_job", icon="PLAY")
        layout.prop(settings, "chain_condition")
        views = rt.state.steering.sorted_snapshots() if rt is not None else []
        if not views:
            layout.label(text="No snapshots yet (one is kept after reconstruction)")
        total = sum(view.info.size_bytes for view in views)
        if views:
            layout.label(text=f"{len(views)} snapshots, {total / 2**20:.1f} MiB on the backend")
        for view in reversed(views):  # newest first
            box = layout.box()
            row = box.row()
            thumbnail = bpy.data.images.get(f"{images.THUMBNAIL_PREFIX}{view.step}")
            if thumbnail is not None:
                row.template_icon(icon_value=row.icon(thumbnail), scale=3.0)
            column = row.column(align=True)
            column.label(text=f"Step {view.step}")
            column.label(text=view.label())
            status = view.status()
            if status:
                column.label(text=status, icon="ERROR" if status.startswith("export failed") else "NONE")
            buttons = box.row(align=True)
            buttons.operator("in2n.import_snapshot", text="Import", icon="IMPORT").step = view.step
            buttons.operator("in2n.edit_from_snapshot", text="Edit from here", icon="SHADERFX").step = view.step
            pin = buttons.operator("in2n.pin_snapshot", text="", icon="PINNED" if view.info.pinned else "UNPINNED")
            pin.step, pin.pinned = view.step, not view.info.pinned
            buttons.operator("in2n.delete_snapshot", text="", icon="TRASH").step = view.step


class IN2N_PT_result(_Base, bpy.types.Panel):
    bl_label = "Result"
    bl_parent_id = "IN2N_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout, settings = self.layout, context.scene.in2n
        if settings.edit_scope == "SELECTED" and settings.result != "GEOMETRY":
            layout.prop(settings, "bake_relight")
        row = layout.row(align=True)
        row.prop(settings, "import_mesh", toggle=True)
        row.prop(settings, "import_pointcloud", toggle=True)
        row = layout.row(align=True)
        row.prop(settings, "textured_mesh", toggle=True)
        row.prop(settings, "max_faces")
        layout.prop(settings, "import_textures")
        layout.operator("in2n.import_result", icon="IMPORT")


CLASSES = (IN2N_PT_main, IN2N_PT_scene, IN2N_PT_edit, IN2N_PT_trial, IN2N_PT_preview, IN2N_PT_snapshots,
           IN2N_PT_result)
