"""Operators that help choose the edit before it runs: try the instruction in 2D (a grid of guidance scales on one
view, rendered without blocking Blender), use a cell's scales, estimate the job on the backend, apply a preset."""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, StringProperty

from ..core import worker_api as api
from ..core.protocol_link import protocol
from . import cameras as cams
from . import capture, render, runtime
from .ops_edit import ModalTask, edit_request
from .render_session import RenderSession, Shot
from .tasks import Task

m = protocol.messages


def parse_scales(text: str, field: str) -> list[float]:
    """``"5, 7.5, 10"`` -> ``[5.0, 7.5, 10.0]``; a ValidationError naming ``field`` otherwise."""
    try:
        values = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise protocol.ValidationError(f"expected comma-separated numbers, got {text!r}", field=field) from None
    if not values:
        raise protocol.ValidationError("give at least one scale", field=field)
    return values


def trial_request(settings: bpy.types.PropertyGroup) -> m.InstructionPreviewRequest:
    """The 2D preview of the panel's instruction and settings (the image is filled in by the worker)."""
    edit = edit_request(settings)
    request = m.InstructionPreviewRequest(
        instruction=edit.instruction, image=m.ImageInfo("uint8", [1, 1, 3]),
        guidance_scales=parse_scales(settings.trial_guidance_scales, "trial_guidance_scales"),
        image_guidance_scales=parse_scales(settings.trial_image_guidance_scales, "trial_image_guidance_scales"),
        ddim_steps=edit.schedule.ddim_steps, noise_level=edit.schedule.t_max, seed=edit.seed,
        memory_mode=edit.memory_mode, engine_overrides=edit.engine_overrides)
    request.validate("preview")  # the protocol's rules (scales, counts) before anything renders
    return request


class IN2N_OT_preview_instruction(ModalTask, bpy.types.Operator):
    """Try the instruction in 2D first: the backend's editor edits one view (the active camera's, rendered without
    blocking Blender, or a training view) for a grid of text x image guidance scales"""

    bl_idname = "in2n.preview_instruction"
    bl_label = "Preview instruction"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.connected_to_a_backend_that(cls, "instruction_preview_request", "previews instructions")
        settings = context.scene.in2n
        if rt is None:
            return False
        if rt.task is not None and rt.task.running:
            cls.poll_message_set(f"{rt.task.name} is still running")
            return False
        if not settings.instruction.strip():
            cls.poll_message_set("Type an instruction first")
            return False
        if settings.trial_view == "ACTIVE" and (context.scene.camera is None or context.scene.camera.type != "CAMERA"):
            cls.poll_message_set("The scene has no active camera (or choose a training view)")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            task = self._task(context)
        except (cams.CameraError, protocol.ProtocolError, OSError, ValueError, IndexError) as exc:
            self.report({"ERROR"}, f"Preview instruction failed: {exc}")
            return {"CANCELLED"}
        return self.start(context, task)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return self.execute(context)

    def _task(self, context: bpy.types.Context) -> Task:
        scene, settings = context.scene, context.scene.in2n
        request = trial_request(settings)
        rt = runtime.get()
        if settings.trial_view == "ACTIVE":
            camera = scene.camera
            if camera is None:
                raise cams.CameraError("the scene has no active camera")
        else:
            training = cams.collection_cameras(settings.camera_collection)
            if not training:
                raise cams.CameraError("the camera collection has no cameras")
            camera = training[min(settings.trial_view_index, len(training) - 1)]
        size = (settings.resolution_x, settings.resolution_y)
        folder = capture.capture_folder_of([camera]) if settings.source == "CAPTURE" else None
        photo = cams.image_path_of(camera, folder) if folder is not None else None
        target = cams.target_path_of(camera, folder)

        def submit(task: Task, image=photo) -> None:  # type: ignore[no-untyped-def]
            rt.submit(api.PreviewInstruction(request, image if image is not None else task.render.shots[0].path,
                                             target))

        if photo is not None and photo.is_file():  # a capture's photo: nothing to render
            return Task("Preview instruction", submit)
        if target is not None:
            render.target_files([camera], [size], None)  # its size is the view's: checked before rendering
        shot = Shot(camera, (runtime.scratch_dir("trial") / "view.png").resolve())
        session = RenderSession(scene, [shot], size[0], size[1], settings.render_samples,
                                interactive=context.window is not None and not bpy.app.background)
        return Task("Preview instruction", submit, render=session)


class IN2N_OT_use_preview_cell(bpy.types.Operator):
    """Use this cell's guidance scales for the edit"""

    bl_idname = "in2n.use_preview_cell"
    bl_label = "Use these scales"
    bl_options = {"REGISTER", "UNDO"}

    guidance_scale: FloatProperty(name="Text guidance")  # type: ignore[valid-type]
    image_guidance_scale: FloatProperty(name="Image guidance")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.in2n
        settings.guidance_scale, settings.image_guidance_scale = self.guidance_scale, self.image_guidance_scale
        self.report({"INFO"}, f"Text guidance {self.guidance_scale:g}, image guidance {self.image_guidance_scale:g}")
        return {"FINISHED"}


class IN2N_OT_estimate(bpy.types.Operator):
    """Ask the backend how long this edit would take on its device (and check the settings by its rules)"""

    bl_idname = "in2n.estimate"
    bl_label = "Estimate"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if runtime.connected_to_a_backend_that(cls, "edit_estimate_request", "estimates jobs") is None:
            return False
        return bool(cams.collection_cameras(context.scene.in2n.camera_collection))

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.in2n
        objects = cams.collection_cameras(settings.camera_collection)
        try:
            request = edit_request(settings)
            if settings.source == "CAPTURE":
                width, height = cams.native_size(objects[0], context.scene)
            else:
                width, height = settings.resolution_x, settings.resolution_y
        except (protocol.ProtocolError, ValueError) as exc:
            self.report({"ERROR"}, f"Estimate failed: {exc}")
            return {"CANCELLED"}
        runtime.get().submit(api.Estimate(request, len(objects), width, height))
        return {"FINISHED"}


def suggested_preset(server: object) -> str:
    """``paper`` for a GPU with room for the full-size editor and nerfacto, else ``quick``."""
    memory = getattr(server, "gpu_memory_bytes", None) or 0
    return "paper" if getattr(server, "gpu_name", None) and memory >= 16 * 2**30 else "quick"


def apply_preset(settings: bpy.types.PropertyGroup, name: str) -> None:
    preset = m.PRESETS[name]
    schedule = preset.schedule
    settings.reconstruction_steps, settings.total_steps = schedule.reconstruction_steps, schedule.total_steps
    settings.edit_every_n_steps, settings.images_per_edit = schedule.edit_every_n_steps, schedule.images_per_edit
    settings.ddim_steps, settings.memory_mode = schedule.ddim_steps, preset.memory_mode


class IN2N_OT_apply_preset(bpy.types.Operator):
    """Set the schedule and memory mode of a preset (quick: a CPU or small GPU; paper: a real GPU)"""

    bl_idname = "in2n.apply_preset"
    bl_label = "Apply preset"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Preset", default="")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.in2n
        name = self.name or settings.preset
        if name not in m.PRESETS:
            self.report({"ERROR"}, f"no preset {name!r} (presets: {', '.join(m.PRESETS)})")
            return {"CANCELLED"}
        apply_preset(settings, name)
        settings.preset = name
        self.report({"INFO"}, f"Preset {name}: {m.PRESETS[name].description}")
        return {"FINISHED"}


class IN2N_OT_cancel_preview(bpy.types.Operator):
    """Stop the 2D preview: the backend stops before its next diffusion step"""

    bl_idname = "in2n.cancel_preview"
    bl_label = "Cancel preview"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        preview = rt.state.steering.preview if rt is not None else None
        return preview is not None and not preview.done and rt is not None and rt.state.connection == "connected"

    def execute(self, context: bpy.types.Context) -> set[str]:
        preview = runtime.get().state.steering.preview
        if preview is None or preview.done:
            self.report({"ERROR"}, "Cancel preview failed: no 2D preview is running")
            return {"CANCELLED"}
        runtime.get().submit(api.CancelPreview(preview.preview_id))
        return {"FINISHED"}


CLASSES = (IN2N_OT_preview_instruction, IN2N_OT_cancel_preview, IN2N_OT_use_preview_cell, IN2N_OT_estimate, IN2N_OT_apply_preset)
