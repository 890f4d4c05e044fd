"""Operators for the edit itself: Edit (render/collect views, upload, start), Cancel, Import result."""

from __future__ import annotations

import json
from pathlib import Path

import bpy

from ..core import worker_api as api
from ..core.protocol_link import protocol
from . import cameras as cams
from . import capture, render, runtime

m = protocol.messages


def _connected_runtime() -> runtime.Runtime | None:
    rt = runtime.peek()
    return rt if rt is not None and rt.state.connection == "connected" else None


def edit_request(settings: bpy.types.PropertyGroup) -> m.EditStartRequest:
    """The edit settings as a protocol request (scene_id is filled in after the upload)."""
    overrides = json.loads(settings.engine_overrides) if settings.engine_overrides.strip() else {}
    if not isinstance(overrides, dict):
        raise protocol.ValidationError("must be a JSON object", field="engine_overrides")
    outputs = ["images"] + (["mesh"] if settings.import_mesh else []) + (["pointcloud"] if settings.import_pointcloud else [])
    request = m.EditStartRequest(
        scene_id="pending", instruction=settings.instruction.strip(), guidance_scale=settings.guidance_scale,
        image_guidance_scale=settings.image_guidance_scale,
        schedule=m.Schedule(reconstruction_steps=settings.reconstruction_steps, total_steps=settings.total_steps,
                            edit_every_n_steps=settings.edit_every_n_steps, images_per_edit=settings.images_per_edit,
                            ddim_steps=settings.ddim_steps),
        memory_mode=settings.memory_mode,
        preview=m.PreviewSettings(enabled=True, max_rate_hz=settings.preview_rate, max_side=settings.preview_max_side),
        outputs=outputs, seed=settings.seed, engine_overrides=overrides,
    )
    # validate here (same rules as the server) so a bad setting is reported before anything is rendered
    return protocol.schema.decode(m.EditStartRequest, protocol.schema.encode(request))


class IN2N_OT_edit(bpy.types.Operator):
    """Render (or collect) the training views, upload them and start editing with the instruction"""

    bl_idname = "in2n.edit"
    bl_label = "Edit"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.in2n
        rt = _connected_runtime()
        if rt is None:
            cls.poll_message_set("Connect to a backend first")
            return False
        if rt.state.busy:
            cls.poll_message_set("A job is running: cancel it or wait for it to finish")
            return False
        if not settings.instruction.strip():
            cls.poll_message_set("Type an instruction, e.g. 'turn the bear into a polar bear'")
            return False
        if len(cams.collection_cameras(settings.camera_collection)) < 2:
            cls.poll_message_set("Choose a camera collection with at least 2 cameras (or generate an orbit)")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene, settings = context.scene, context.scene.in2n
        objects = cams.collection_cameras(settings.camera_collection)
        try:
            request = edit_request(settings)
            folder = None
            if settings.source == "CAPTURE":  # the imported capture's folder (a COLMAP model's is above sparse/0)
                folder = capture.capture_folder_of(objects) or Path(bpy.path.abspath(settings.capture_path)).parent
            if folder is not None:
                cameras, images = render.capture_views(scene, objects, folder)
                targets = render.target_images(objects, [(camera.w, camera.h) for camera in cameras], folder)
            else:
                # targets first: a bad one is reported before anything renders
                size = (settings.resolution_x, settings.resolution_y)
                targets = render.target_images(objects, [size] * len(objects), None)
                wm = context.window_manager
                wm.progress_begin(0, len(objects))
                try:
                    cameras, images = render.render_views(
                        scene, objects, settings.resolution_x, settings.resolution_y, settings.render_samples,
                        runtime.scratch_dir("renders", scene.name), progress=lambda done, total: wm.progress_update(done))
                finally:
                    wm.progress_end()
        except (cams.CameraError, protocol.ProtocolError, OSError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Edit failed: {exc}")
            return {"CANCELLED"}
        metadata = {"blend_file": bpy.data.filepath, "source": settings.source}
        scene[runtime.UPLOADED_CAMERAS] = json.dumps([obj.name for obj in objects])
        runtime.get().submit(api.StartEdit(cameras, images, request, scene_name=scene.name, metadata=metadata,
                                           aux=targets))
        self.report({"INFO"}, f"Uploading {len(images)} views" + (f" and {len(targets)} simulated-editor targets"
                                                                   if targets else "") + "...")
        return {"FINISHED"}


class IN2N_OT_cancel(bpy.types.Operator):
    """Cancel the running edit job"""

    bl_idname = "in2n.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = _connected_runtime()
        if rt is None or rt.state.job is None or rt.state.job.finished:
            cls.poll_message_set("No running job to cancel")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        assert rt.state.job is not None
        rt.submit(api.Cancel(rt.state.job.job_id))
        return {"FINISHED"}


class IN2N_OT_import_result(bpy.types.Operator):
    """Download the edited mesh / point cloud and import it into a new collection (same world frame)"""

    bl_idname = "in2n.import_result"
    bl_label = "Import result"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.in2n
        rt = _connected_runtime()
        if rt is None:
            cls.poll_message_set("Connect to the backend that ran the job")
            return False
        if rt.state.job is None or not rt.state.job.has_results:
            cls.poll_message_set("No finished job with results yet")
            return False
        if not (settings.import_mesh or settings.import_pointcloud or settings.import_textures):
            cls.poll_message_set("Tick at least one of mesh / point cloud / edited photos")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt, settings = runtime.get(), context.scene.in2n
        assert rt.state.job is not None
        kinds = tuple(kind for kind, wanted in (("mesh", settings.import_mesh), ("pointcloud", settings.import_pointcloud),
                                                ("image", settings.import_textures)) if wanted)
        folder = runtime.scratch_dir("results", rt.state.job.job_id)
        rt.submit(api.FetchResults(rt.state.job.job_id, folder, kinds))
        self.report({"INFO"}, "Downloading results...")
        return {"FINISHED"}


class IN2N_OT_preview_from_camera(bpy.types.Operator):
    """Render the live preview from the scene's active camera"""

    bl_idname = "in2n.preview_from_camera"
    bl_label = "Preview from active camera"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = _connected_runtime()
        if rt is None or rt.state.job is None or rt.state.job.finished:
            cls.poll_message_set("No running job")
            return False
        if context.scene.camera is None or context.scene.camera.type != "CAMERA":
            cls.poll_message_set("The scene has no active camera")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene, settings = context.scene, context.scene.in2n
        width, height = cams.native_size(scene.camera, scene)
        scale = min(1.0, settings.preview_max_side / max(width, height))
        try:
            camera = render.protocol_camera(scene.camera, scene, (max(1, round(width * scale)), max(1, round(height * scale))))
        except cams.CameraError as exc:
            self.report({"ERROR"}, f"Preview camera: {exc}")
            return {"CANCELLED"}
        preview = m.PreviewSettings(enabled=True, max_rate_hz=settings.preview_rate, camera=camera,
                                    max_side=settings.preview_max_side)
        rt = runtime.get()
        assert rt.state.job is not None
        rt.submit(api.SetPreview(rt.state.job.job_id, preview))
        return {"FINISHED"}


CLASSES = (IN2N_OT_edit, IN2N_OT_cancel, IN2N_OT_import_result, IN2N_OT_preview_from_camera)
