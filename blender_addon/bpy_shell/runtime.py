"""The add-on's live state in this Blender session: the backend worker, the session state and the timer callback
that applies the worker's notices to Blender data on the main thread.

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
import numpy as np

from ..core import protocol_link
from ..core import session as ss
from ..core import worker_api as api
from ..core.worker import BackendWorker
from . import ADDON_ID

log = logging.getLogger(__name__)

PREVIEW_IMAGE = "in2n preview"
UPLOADED_CAMERAS = "in2n_uploaded_cameras"
"""Scene custom property: names of the cameras of the last upload, in upload order (results refer to indices)."""
INTERVAL_S = 0.1


class Runtime:
    def __init__(self) -> None:
        self.worker = BackendWorker()
        self.state = ss.SessionState()
        self.local_backend: subprocess.Popen[bytes] | None = None
        self.reports: list[ss.Report] = []
        """Every report shown so far (tests read it; the UI shows the last error in the panel)."""
        self.imported: list[bpy.types.Collection] = []

    def submit(self, command: api.Command) -> None:
        if isinstance(command, api.Connect):
            self.state.connection = "connecting"
        self.worker.submit(command)
        ensure_timer()


_RUNTIME: Runtime | None = None


def get() -> Runtime:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime()
    return _RUNTIME


def peek() -> Runtime | None:
    return _RUNTIME


def shutdown() -> None:
    """Stop the worker (unregister). A local backend keeps running: its jobs survive Blender closing."""
    global _RUNTIME
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
    if _RUNTIME is not None:
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
    """Apply queued notices to Blender data. Returns the next interval, or None when there is nothing to watch."""
    runtime = _RUNTIME
    if runtime is None:
        return None
    scene = bpy.context.scene
    remembered = scene.in2n.job_id if scene is not None and hasattr(scene, "in2n") else ""
    for notice in runtime.worker.drain():
        try:
            for action in runtime.state.apply(notice, remembered_job_id=remembered):
                execute(runtime, action)
        except Exception as exc:  # a failing action must not kill the timer: report it instead
            log.exception("applying %s failed", type(notice).__name__)
            execute(runtime, ss.Report("ERROR", f"in2n: {type(exc).__name__}: {exc}"))
    redraw()
    watching = runtime.state.connection in ("connecting", "connected") or not runtime.worker.notices.empty()
    return INTERVAL_S if watching and runtime.worker.alive else None


def execute(runtime: Runtime, action: ss.Action) -> None:
    if isinstance(action, ss.Report):
        report(runtime, action)
    elif isinstance(action, ss.ShowPreview):
        scene = bpy.context.scene
        if scene is not None and scene.in2n.preview_history == 0:
            show_preview(action.snapshot)
    elif isinstance(action, ss.RememberJob):
        scene = bpy.context.scene
        if scene is not None and scene.in2n.job_id != action.job_id:
            scene.in2n.job_id = action.job_id
    elif isinstance(action, ss.ImportResults):
        from . import results

        scene = bpy.context.scene
        settings = scene.in2n
        collection = results.import_results(scene, action.files, action.kinds, job_id=action.job_id,
                                            mesh=settings.import_mesh, pointcloud=settings.import_pointcloud)
        runtime.imported.append(collection)
        if settings.import_textures:
            images = {n: p for n, p in action.files.items() if action.kinds.get(n) == "image"}
            uploaded = [bpy.data.objects[n] for n in json.loads(scene.get(UPLOADED_CAMERAS, "[]")) if n in bpy.data.objects]
            changed = results.apply_edited_images(uploaded, images, action.camera_index)
            report(runtime, ss.Report("INFO", f"Edited photos on {changed} image plane(s)"))
        report(runtime, ss.Report("INFO", f"Imported {len(collection.objects)} object(s) into '{collection.name}'"))


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


# ---------------------------------------------------------------- preview image
def preview_image(width: int, height: int) -> bpy.types.Image:
    """The one preview Image datablock, (re)sized to ``width x height``; float so pixels go in unconverted."""
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.new(PREVIEW_IMAGE, width, height, alpha=True, float_buffer=True)
    elif tuple(image.size) != (width, height):
        image.scale(width, height)
    return image


def show_preview(snapshot: ss.PreviewSnapshot) -> bpy.types.Image:
    """Update the preview Image in place (one ``foreach_set``) and show it behind the active camera."""
    image = preview_image(snapshot.width, snapshot.height)
    image.pixels.foreach_set(snapshot.pixels)
    image.update()
    image["in2n_step"] = snapshot.step
    if image.preview is not None:
        image.preview.reload()
    camera = bpy.context.scene.camera if bpy.context.scene is not None else None
    if camera is not None and camera.type == "CAMERA":
        backgrounds = camera.data.background_images
        if not any(bg.image == image for bg in backgrounds):
            backgrounds.new().image = image
        camera.data.show_background_images = True
    return image


def show_history(index: int) -> None:
    """0: the latest preview; n >= 1: the n-th snapshot (clamped to what is kept)."""
    runtime = _RUNTIME
    if runtime is None or not runtime.state.history:
        return
    history = runtime.state.history
    snapshot = history[-1] if index <= 0 else history[min(index, len(history)) - 1]
    show_preview(snapshot)


def preview_as_array() -> np.ndarray[Any, Any] | None:
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        return None
    pixels = np.empty(len(image.pixels), dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return pixels
