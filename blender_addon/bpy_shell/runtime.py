"""The add-on's live state in this Blender session: the backend worker, the session state, the main-thread task
(rendering views, :mod:`.tasks`) and the timer callback that applies the worker's notices to Blender data.

``pump()`` is the ``bpy.app.timers`` callback. It returns the next interval while there is something to watch and
None when idle (which unregisters the timer). Timers never fire in ``bpy`` module mode, so tests call ``pump()``
themselves until it returns None or their condition holds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import bpy

from ..core import protocol_link
from ..core import session as ss
from ..core import worker_api as api
from ..core.worker import BackendWorker
from . import ADDON_ID, images
from .tasks import Task

log = logging.getLogger(__name__)

PREVIEW_IMAGE = images.PREVIEW_IMAGE
UPLOADED_CAMERAS = "in2n_uploaded_cameras"
"""Scene custom property: names of the cameras of the last upload, in upload order (results refer to indices)."""
EDITED_OBJECTS = "in2n_edited_objects"
"""Scene custom property: the objects the last edit was limited to ("selected objects only"), by name."""
INTERVAL_S = 0.1


class Runtime:
    def __init__(self) -> None:
        self.worker = BackendWorker()
        self.state = ss.SessionState()
        self.state.results_folder = scratch_dir("results")
        self.local_backend: subprocess.Popen[bytes] | None = None
        self.reports: list[ss.Report] = []
        """Every report shown so far (tests read it; the UI shows the last error in the panel)."""
        self.imported: list[bpy.types.Collection] = []
        self.task: Task | None = None
        """The main-thread task in progress (rendering views), if any."""
        self.task_is_modal = False
        """Stepped by its modal operator (a window); else by :func:`pump`."""
        self.finished_tasks: list[Task] = []
        self.preview_camera = ""
        """The camera the live preview was asked for ('' : the job's first training camera)."""

    def submit(self, command: api.Command) -> None:
        if isinstance(command, api.Connect):
            self.state.connection = "connecting"
        self.worker.submit(command)
        ensure_timer()

    def start_task(self, task: Task, *, modal: bool = False) -> None:
        if self.task is not None and self.task.running:
            raise RuntimeError(f"{self.task.name} is still running: wait for it or press Esc")
        self.task, self.task_is_modal = task, modal
        ensure_timer()

    def tick_task(self) -> None:
        """One step of the task; reports how it ended."""
        task = self.task
        if task is None or task.tick(self):
            return
        self.task = None
        self.finished_tasks.append(task)
        if task.state == "failed":
            report(self, ss.Report("ERROR", f"{task.name} failed: {task.error}"))
        elif task.state == "cancelled":
            report(self, ss.Report("INFO", f"{task.name} cancelled; the scene's render settings are as they were"))


_RUNTIME: Runtime | None = None


def get() -> Runtime:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime()
    return _RUNTIME


def peek() -> Runtime | None:
    return _RUNTIME


def connected_to_a_backend_that(operator: type[bpy.types.Operator], request_type: str, does: str) -> Runtime | None:
    """For an operator's ``poll``: the runtime when a connected backend answers ``request_type``, else None with
    the reason in the operator's tooltip ("Connect to a backend that <does>")."""
    rt = _RUNTIME
    if rt is None or rt.state.connection != "connected" or not rt.state.can(request_type):
        operator.poll_message_set(f"Connect to a backend that {does}")
        return None
    return rt


def shutdown() -> None:
    """Stop the worker (unregister). A local backend keeps running: its jobs survive Blender closing."""
    global _RUNTIME
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
    if _RUNTIME is not None:
        if _RUNTIME.task is not None:
            _RUNTIME.task.cancel()
        _RUNTIME.worker.stop()
        _RUNTIME = None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=INTERVAL_S, persistent=True)


def scratch_dir(*parts: str) -> Path:
    """Scratch space of the extension (renders, downloads, logs); never inside the add-on folder."""
    try:
        base = Path(bpy.utils.extension_path_user(ADDON_ID, create=True))
    except ValueError:  # imported as a plain package (development checkout), not as an extension
        # a shared temp folder: per user, private, and never one another user created first
        base = protocol_link.protocol.ensure_private_dir(Path(tempfile.gettempdir()) / f"in2n_blender-{os.getuid()}")
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- timer callback
def pump() -> float | None:
    """Apply queued notices to Blender data, step a task no modal operator steps. Returns the next interval, or
    None when there is nothing to watch."""
    runtime = _RUNTIME
    if runtime is None:
        return None
    if runtime.task is not None and not runtime.task_is_modal:
        runtime.tick_task()
    scene = bpy.context.scene
    remembered = scene.in2n.job_id if scene is not None and hasattr(scene, "in2n") else ""
    was_finished = runtime.state.job is not None and runtime.state.job.finished
    for notice in runtime.worker.drain():
        try:
            for action in runtime.state.apply(notice, remembered_job_id=remembered):
                execute(runtime, action)
        except Exception as exc:  # a failing action must not kill the timer: report it instead
            log.exception("applying %s failed", type(notice).__name__)
            execute(runtime, ss.Report("ERROR", f"in2n: {type(exc).__name__}: {exc}"))
    if runtime.state.job is not None and runtime.state.job.finished and not was_finished:
        images.hide_preview_backgrounds()  # the live preview does not outlive its job
    redraw()
    watching = (runtime.state.connection in ("connecting", "connected") or not runtime.worker.notices.empty()
                or runtime.task is not None)
    return INTERVAL_S if watching and (runtime.worker.alive or runtime.task is not None) else None


def execute(runtime: Runtime, action: ss.Action) -> None:
    scene = bpy.context.scene
    if isinstance(action, ss.Report):
        report(runtime, action)
    elif isinstance(action, ss.ShowPreview):
        snapshot = action.snapshot
        images.show_preview(snapshot.step, snapshot.width, snapshot.height, snapshot.pixels,
                            preview_camera(runtime, scene, snapshot.camera_index), scene.in2n.show_preview_in_camera)
    elif isinstance(action, ss.RememberJob):
        if scene is not None and scene.in2n.job_id != action.job_id:
            scene.in2n.job_id = action.job_id
    elif isinstance(action, ss.SendCommand):
        runtime.submit(action.command)
    elif isinstance(action, ss.ShowThumbnail):
        images.thumbnail(action.step, action.path)
    elif isinstance(action, ss.ShowInstructionGrid):
        preview = action.preview
        images.show_grid(preview.grid, preview.columns, preview.rows)
        report(runtime, ss.Report("INFO", f"Instruction preview ready ({preview.count} edits): pick a cell in the "
                                          "panel, or open the image 'in2n instruction preview'"))
    elif isinstance(action, ss.ImportResults):
        import_results(runtime, scene, action)


def preview_camera(runtime: Runtime, scene: bpy.types.Scene, camera_index: int | None) -> bpy.types.Object | None:
    """The camera a live preview shows the view of: the uploaded camera it names, or the one asked for."""
    if camera_index is not None:
        names = json.loads(scene.get(UPLOADED_CAMERAS, "[]"))
        if 0 <= camera_index < len(names):
            return bpy.data.objects.get(names[camera_index])
    return bpy.data.objects.get(runtime.preview_camera) if runtime.preview_camera else None


def import_results(runtime: Runtime, scene: bpy.types.Scene, action: ss.ImportResults) -> None:
    from . import results, surfaces

    settings = scene.in2n
    name = f"{action.job_id} step {action.snapshot_step}" if action.snapshot_step is not None else action.job_id
    collection = results.import_results(scene, action.files, action.kinds, job_id=name,
                                        mesh=settings.import_mesh, pointcloud=settings.import_pointcloud)
    try:
        copies = surfaces.import_baked(scene, collection, action.baked, relight=settings.bake_relight)
    except surfaces.SurfaceError as exc:
        report(runtime, ss.Report("ERROR", f"Import result failed: {exc}"))
        copies = []
    runtime.imported.append(collection)
    if settings.import_textures and action.snapshot_step is None:
        edited = {n: p for n, p in action.files.items() if action.kinds.get(n) == "image"}
        uploaded = [bpy.data.objects[n] for n in json.loads(scene.get(UPLOADED_CAMERAS, "[]")) if n in bpy.data.objects]
        changed = results.apply_edited_images(uploaded, edited, action.camera_index)
        report(runtime, ss.Report("INFO", f"Edited photos on {changed} image plane(s)"))
    if settings.hide_originals:  # the edit of the selected objects replaces them in the scene
        for name in {*json.loads(scene.get(EDITED_OBJECTS, "[]")), *(copy[surfaces.SOURCE_KEY] for copy in copies)}:
            original = bpy.data.objects.get(name)
            if original is not None:
                original.hide_set(True)
                original.hide_render = True
    push_undo(f"Import {collection.name}")
    report(runtime, ss.Report("INFO", f"Imported {len(collection.objects)} object(s) into '{collection.name}'"))


def push_undo(message: str) -> None:
    """An undo step for a change made from the timer (operators get theirs from Blender; a timer does not)."""
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError as exc:  # no undo stack (background mode)
        log.debug("no undo step for %s: %s", message, exc)


def report(runtime: Runtime, action: ss.Report) -> None:
    """A Blender report (status bar + Info editor) from outside an operator, via the tiny report operator."""
    runtime.reports.append(action)
    (log.error if action.level == "ERROR" else log.info)("%s", action.message)
    try:
        bpy.ops.in2n.report(level=action.level, message=action.message)
    except (RuntimeError, AttributeError) as exc:  # no operator context (e.g. during unregister)
        log.debug("report operator unavailable: %s", exc)


def redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR"):
                area.tag_redraw()


def preview_as_array() -> Any:
    return images.as_array(PREVIEW_IMAGE)
