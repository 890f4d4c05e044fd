"""Operators for the edit itself: Edit (check the settings, render or collect the views, upload, start), Cancel,
Import result, Preview from active camera."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bpy

from ..core import session, uploads
from ..core import worker_api as api
from ..core.protocol_link import protocol
from . import aux_pass, capture, render, runtime, surfaces
from . import cameras as cams
from .render_session import RenderSession
from .tasks import Refused, Task

m = protocol.messages


def _connected_runtime() -> runtime.Runtime | None:
    rt = runtime.peek()
    return rt if rt is not None and rt.state.connection == "connected" else None


def gives_back(settings: bpy.types.PropertyGroup) -> tuple[bool, bool]:
    """``(bake, geometry)``: whether the edit bakes onto the selected objects, and whether it exports the NeRF's
    geometry (always, for a whole-scene edit or a capture)."""
    selected = settings.edit_scope == "SELECTED" and settings.source != "CAPTURE"
    return selected and settings.result != "GEOMETRY", not selected or settings.result != "BAKED"


def edit_request(settings: bpy.types.PropertyGroup, region: m.EditRegion | None = None) -> m.EditStartRequest:
    """The edit settings as a protocol request (scene_id is filled in after the upload; ``region``: the selected
    objects' bounds, for "selected objects only")."""
    overrides = json.loads(settings.engine_overrides) if settings.engine_overrides.strip() else {}
    if not isinstance(overrides, dict):
        raise protocol.ValidationError("must be a JSON object", field="engine_overrides")
    geometry = gives_back(settings)[1]
    outputs = (["images"] + (["mesh"] if geometry and settings.import_mesh else [])
               + (["pointcloud"] if geometry and settings.import_pointcloud else []))
    request = m.EditStartRequest(
        scene_id="pending", instruction=settings.instruction.strip(), guidance_scale=settings.guidance_scale,
        image_guidance_scale=settings.image_guidance_scale,
        schedule=m.Schedule(reconstruction_steps=settings.reconstruction_steps, total_steps=settings.total_steps,
                            edit_every_n_steps=settings.edit_every_n_steps, images_per_edit=settings.images_per_edit,
                            ddim_steps=settings.ddim_steps),
        memory_mode=settings.memory_mode,
        preview=m.PreviewSettings(enabled=True, max_rate_hz=settings.preview_rate, max_side=settings.preview_max_side),
        outputs=outputs, seed=settings.seed,
        snapshots=m.SnapshotSettings(every_n_steps=settings.snapshot_every, views=settings.snapshot_views),
        use_depth=settings.use_depth, depth_while_editing=settings.depth_while_editing, edit_region=region,
        geometry=m.GeometrySettings(textured=settings.textured_mesh, max_faces=settings.max_faces,
                                    bake_resolution=settings.bake_resolution),
        preset=settings.preset, engine_overrides=overrides,
    )
    # validate here (the protocol's rules; the server's own follow before anything renders)
    return protocol.schema.decode(m.EditStartRequest, protocol.schema.encode(request))


def selection(context: bpy.types.Context) -> list[bpy.types.Object]:
    """The objects "selected objects only" edits: selected, with geometry."""
    return [obj for obj in context.selected_objects if obj.type not in ("CAMERA", "LIGHT", "EMPTY", "LIGHT_PROBE")]


def edit_task(context: bpy.types.Context, interactive: bool) -> Task:
    """What Edit does: the server checks the settings, the views render one per step (with their depth and the
    selected objects' mask when asked), the worker uploads."""
    scene, settings = context.scene, context.scene.in2n
    objects = cams.collection_cameras(settings.camera_collection)
    selected = selection(context) if settings.edit_scope == "SELECTED" else []
    if settings.edit_scope == "SELECTED" and not selected:
        raise cams.CameraError("'Selected objects only': select the objects to edit first")
    if selected and settings.source == "CAPTURE":
        raise cams.CameraError("'Selected objects only' needs views rendered from Blender (Source: Render from "
                               "Blender): a capture's photos have no object masks")
    region = m.EditRegion(*aux_pass.region(selected, settings.region_margin)) if selected else None
    request = edit_request(settings, region)
    # the surfaces to bake onto, checked now: a bad selection is said before anything renders
    meshes = surfaces.upload_surfaces(selected, context) if gives_back(settings)[0] else []
    rt = runtime.get()
    metadata = {"blend_file": bpy.data.filepath, "source": settings.source,
                "selected_objects": [obj.name for obj in selected]}

    def start(cameras: list[m.Camera], files: list[Path], aux: list[Any]) -> None:
        scene[runtime.UPLOADED_CAMERAS] = json.dumps([obj.name for obj in objects])
        scene[runtime.EDITED_OBJECTS] = json.dumps([obj.name for obj in selected])
        rt.submit(api.StartEdit(cameras, list(files), request, scene_name=scene.name, metadata=metadata, aux=aux,
                                meshes=meshes))
        roles = sorted({item.role for item in aux})
        runtime.report(rt, runtime.ss.Report("INFO", f"Uploading {len(files)} views" + (
            f" with their {', '.join(roles)} images" if roles else "") + (
            f" and {len(meshes)} object(s) to bake onto" if meshes else "") + "..."))

    if settings.source == "CAPTURE":  # the imported capture's folder (a COLMAP model's is above sparse/0)
        folder = capture.capture_folder_of(objects) or Path(bpy.path.abspath(settings.capture_path)).parent
        cameras, photos = render.capture_photos(scene, objects, folder)
        targets = render.target_files(objects, [(camera.w, camera.h) for camera in cameras], folder)
        estimate = api.Estimate(request, len(cameras), cameras[0].w, cameras[0].h)
        return Task("Edit", lambda task: start(cameras, photos, targets), validate=estimate)
    size = (settings.resolution_x, settings.resolution_y)
    targets = render.target_files(objects, [size] * len(objects), None)  # a bad one stops Edit before rendering
    folder = runtime.scratch_dir("renders", scene.name)
    shots = render.render_shots(objects, folder)
    knowledge: dict[int, aux_pass.ViewKnowledge] = {}
    if settings.use_depth or selected:  # each view's depth and mask, rendered right after it
        shots = [shot for index, color in enumerate(shots) for shot in (color, render.knowledge_shot(
            scene, color, selected, lambda path, index=index: knowledge.__setitem__(index, aux_pass.read(path))))]
    # results imported earlier (the NeRF's meshes and points) would stand in front of the objects in the views and
    # their masks: they are left out of this edit's renders, unless selected
    imported = [obj for obj in scene.objects if obj.get("in2n_kind") in ("mesh", "pointcloud") and obj not in selected]
    session = RenderSession(scene, shots, size[0], size[1], settings.render_samples, interactive=interactive,
                            hidden=imported)

    def submit(task: Task) -> None:
        color = [shot for shot in shots if shot.collect is None]
        cameras, files = render.rendered_views(scene, color, size)
        if selected:
            problem = uploads.mask_problem([view.mask for view in knowledge.values()], [o.name for o in selected])
            if problem:
                raise Refused(problem)
        aux: list[Any] = list(targets)
        for index, view in sorted(knowledge.items()):
            if settings.use_depth:
                aux.append(protocol.AuxUpload(index, "depth", protocol.RawImage.from_array(view.depth)))
            if selected:
                aux.append(protocol.AuxUpload(index, "edit_mask", protocol.RawImage.from_array(view.mask)))
        start(cameras, files, aux)

    return Task("Edit", submit, render=session, validate=api.Estimate(request, len(objects), *size))


class ModalTask:
    """Shared by the operators that start a :class:`Task`: with a window, a modal operator stepping it on timer
    events (Esc cancels, progress in the status bar); without one, the add-on's timer steps it."""

    _timer = None

    def start(self, context: bpy.types.Context, task: Task) -> set[str]:
        rt = runtime.get()
        interactive = context.window is not None and not bpy.app.background
        rt.start_task(task, modal=interactive)
        if not interactive:
            return {"FINISHED"}
        self._timer = context.window_manager.event_timer_add(0.05, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        rt = runtime.get()
        task = rt.task
        if task is None:
            return self._end(context, {"FINISHED"})
        if event.type == "ESC":
            task.cancel()
        if event.type in ("TIMER", "ESC"):
            rt.tick_task()
            context.workspace.status_text_set(task.progress_text() if task.running else None)
            if not task.running:
                return self._end(context, {"FINISHED"} if task.state == "done" else {"CANCELLED"})
        return {"PASS_THROUGH"}  # the rest of Blender stays usable while the views render

    def _end(self, context: bpy.types.Context, result: set[str]) -> set[str]:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        context.workspace.status_text_set(None)
        return result


class IN2N_OT_edit(ModalTask, bpy.types.Operator):
    """Check the settings with the backend, render (or collect) the training views without blocking Blender, upload
    them and start editing with the instruction (Esc cancels the rendering)"""

    bl_idname = "in2n.edit"
    bl_label = "Edit"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.in2n
        rt = _connected_runtime()
        if rt is None:
            cls.poll_message_set("Connect to a backend first")
            return False
        if rt.state.busy or (rt.task is not None and rt.task.running):
            cls.poll_message_set("A job is running (or its views are rendering): cancel it or wait for it to finish")
            return False
        if not settings.instruction.strip():
            cls.poll_message_set("Type an instruction, e.g. 'turn the bear into a polar bear'")
            return False
        if len(cams.collection_cameras(settings.camera_collection)) < 2:
            cls.poll_message_set("Choose a camera collection with at least 2 cameras (or generate an orbit)")
            return False
        return True

    def _task(self, context: bpy.types.Context) -> Task | None:
        try:
            return edit_task(context, interactive=context.window is not None and not bpy.app.background)
        except (cams.CameraError, protocol.ProtocolError, OSError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Edit failed: {exc}")  # surfaces.SurfaceError too: it names the object
            return None

    def execute(self, context: bpy.types.Context) -> set[str]:
        task = self._task(context)
        return self.start(context, task) if task is not None else {"CANCELLED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return self.execute(context)


class IN2N_OT_cancel(bpy.types.Operator):
    """Cancel the rendering of the views, or the running edit job (it keeps a snapshot to import)"""

    bl_idname = "in2n.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        if rt is not None and rt.task is not None and rt.task.running:
            return True
        rt = _connected_runtime()
        if rt is None or rt.state.job is None or rt.state.job.finished:
            cls.poll_message_set("No running job to cancel")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        if rt.task is not None and rt.task.running:
            rt.task.cancel()
            rt.tick_task()
            return {"FINISHED"}
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
            cls.poll_message_set("No finished job with results yet (a snapshot can be imported any time)")
            return False
        baked = any(session.is_baked(artifact) for artifact in rt.state.job.artifacts)
        if not (baked or settings.import_mesh or settings.import_pointcloud or settings.import_textures):
            cls.poll_message_set("Tick at least one of mesh / point cloud / edited photos")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt, settings = runtime.get(), context.scene.in2n
        assert rt.state.job is not None
        kinds = tuple(kind for kind, wanted in (("mesh", settings.import_mesh), ("pointcloud", settings.import_pointcloud),
                                                ("image", settings.import_textures)) if wanted)
        folder = runtime.scratch_dir("results", rt.state.job.job_id)
        rt.submit(api.FetchResults(rt.state.job.job_id, folder, kinds, baked=True))
        self.report({"INFO"}, "Downloading results...")
        return {"FINISHED"}


class IN2N_OT_preview_from_camera(bpy.types.Operator):
    """Render the live preview from the scene's active camera (shown behind that camera)"""

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
        rt.preview_camera = scene.camera.name
        rt.submit(api.SetPreview(rt.state.job.job_id, preview))
        return {"FINISHED"}


CLASSES = (IN2N_OT_edit, IN2N_OT_cancel, IN2N_OT_import_result, IN2N_OT_preview_from_camera)
