"""Rendering training views without freezing Blender: one view per step, cancellable, settings restored after.

A :class:`RenderSession` renders its cameras one at a time into a folder. With a window, each step starts Blender's
own render job (``render.render('INVOKE_DEFAULT')``, as BlenderNeRF does: the render runs off the main thread, the
UI stays usable, Esc works) and the next step waits for its ``render_complete`` handler; without one (background,
the ``bpy`` module) a step renders its view in place. The steps come from the modal Edit operator's timer events,
or from the add-on's timer callback (``runtime.pump``) where there is no window. The scene's render settings and
active camera are changed for the session only: :meth:`finish` restores them, whether it completed, failed or was
cancelled. Nothing here decodes a render: the files are uploaded as they are (PNG), by the worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

SAVED_RENDER = ("resolution_x", "resolution_y", "resolution_percentage", "filepath")
SAVED_IMAGE = ("file_format", "color_mode", "color_depth")


@dataclass
class Shot:
    """One render: a camera into a file, optionally with a scene change for that render only (e.g. Blender's
    render of the intended edit, or the depth / mask pass)."""

    camera: bpy.types.Object
    path: Path
    prepare: Callable[[], Callable[[], None]] | None = None
    """Changes the scene for this render; returns what undoes it."""
    image_format: tuple[Any, Any, Any] = ("PNG", "RGB", "8")
    """file_format, color_mode, color_depth of this render."""
    collect: Callable[[Path], None] | None = None
    """Reads what was rendered, right after the render (e.g. the depth and mask pass)."""


@dataclass
class RenderSession:
    """Renders ``shots`` with ``scene`` at ``width x height`` (``samples`` Cycles samples)."""

    scene: bpy.types.Scene
    shots: list[Shot]
    width: int
    height: int
    samples: int
    interactive: bool = False
    """Start each render as Blender's render job (a window is needed); else render in place."""
    on_done: Callable[[RenderSession], None] | None = None
    """Called once every shot is rendered (not when cancelled or failed)."""
    hidden: list[bpy.types.Object] = field(default_factory=list)
    """Objects left out of every render of the session (shown again afterwards)."""
    done: int = 0
    cancelled: bool = False
    error: str = ""
    finished: bool = False
    started: float = field(default_factory=time.monotonic)
    longest_step_s: float = 0.0
    """The longest one step held the main thread (with a window: what a user would feel as a freeze)."""
    longest_overhead_s: float = 0.0
    """The same without the time spent inside a render done in place (the session's own work per step)."""
    _saved: dict[str, Any] = field(default_factory=dict)
    _undo: Callable[[], None] | None = None
    _rendering: bool = False
    _render_s: float = 0.0
    _handlers: list[tuple[Any, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.shots)

    @property
    def fraction(self) -> float:
        return self.done / max(self.total, 1)

    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (time.monotonic() - self.started) / self.done * (self.total - self.done)

    def progress_text(self) -> str:
        eta = self.eta_s()
        return f"Rendering view {min(self.done + 1, self.total)}/{self.total}" + (f", ETA {eta:.0f} s" if eta else "")

    # ------------------------------------------------------------------ life cycle
    def begin(self) -> None:
        render, cycles = self.scene.render, getattr(self.scene, "cycles", None)
        self._saved = {name: getattr(render, name) for name in SAVED_RENDER}
        self._saved.update({f"image.{name}": getattr(render.image_settings, name) for name in SAVED_IMAGE})
        self._saved["camera"] = self.scene.camera
        if self.scene.render.engine == "CYCLES" and cycles is not None:
            self._saved["cycles.samples"] = cycles.samples
            cycles.samples = self.samples
        render.resolution_x, render.resolution_y, render.resolution_percentage = self.width, self.height, 100
        self._saved["hidden"] = [(obj, obj.hide_render) for obj in self.hidden]
        for obj in self.hidden:
            obj.hide_render = True
        if self.interactive:
            for handlers, callback in ((bpy.app.handlers.render_complete, self._render_ended),
                                       (bpy.app.handlers.render_cancel, self._render_cancelled)):
                handlers.append(callback)
                self._handlers.append((handlers, callback))

    def step(self) -> bool:
        """Advance by one render; False once the session is over (done, cancelled or failed)."""
        if self.finished:
            return False
        if self.cancelled or self.error:
            self.finish()
            return False
        if self._rendering:
            return True  # Blender's render job is still running
        started = time.perf_counter()
        self._render_s = 0.0
        try:
            self._start_next()
        except Exception as exc:  # a failed render ends the session with its reason, never half-restored
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            took = time.perf_counter() - started
            self.longest_step_s = max(self.longest_step_s, took)
            self.longest_overhead_s = max(self.longest_overhead_s, took - self._render_s)
        if self.error or self.done == self.total:
            self.finish()
            return False
        return True

    def _start_next(self) -> None:
        shot = self.shots[self.done]
        shot.path.parent.mkdir(parents=True, exist_ok=True)
        render = self.scene.render
        render.image_settings.file_format, render.image_settings.color_mode = shot.image_format[:2]
        render.image_settings.color_depth = shot.image_format[2]
        render.filepath = str(shot.path.resolve())
        self.scene.camera = shot.camera
        self._undo = shot.prepare() if shot.prepare is not None else None
        if self.interactive:
            self._rendering = True
            bpy.ops.render.render("INVOKE_DEFAULT", write_still=True, scene=self.scene.name)
            return
        rendering = time.perf_counter()
        try:
            bpy.ops.render.render(write_still=True, scene=self.scene.name)
        finally:
            self._render_s = time.perf_counter() - rendering
            self._restore_shot()
        self._finish_shot(shot)

    def _finish_shot(self, shot: Shot) -> None:
        if not shot.path.is_file():
            raise RuntimeError(f"Blender wrote no image for camera '{shot.camera.name}' ({shot.path})")
        if shot.collect is not None:
            shot.collect(shot.path)
        self.done += 1

    def _restore_shot(self) -> None:
        if self._undo is not None:
            undo, self._undo = self._undo, None
            undo()

    def _render_ended(self, *args: Any) -> None:  # render_complete handler (interactive)
        self._restore_shot()
        self._rendering = False
        try:
            self._finish_shot(self.shots[self.done])
        except Exception as exc:  # ends the session at its next step, with the reason
            self.error = f"{type(exc).__name__}: {exc}"

    def _render_cancelled(self, *args: Any) -> None:  # render_cancel handler: Esc in the render window
        self._restore_shot()
        self._rendering = False
        self.cancelled = True

    def cancel(self) -> None:
        """Stop after the current render (Esc in the modal operator)."""
        self.cancelled = True

    def finish(self) -> None:
        """Restore the scene as it was; call ``on_done`` when everything was rendered."""
        if self.finished:
            return
        self.finished = True
        self._restore_shot()
        for handlers, callback in self._handlers:
            if callback in handlers:
                handlers.remove(callback)
        self._handlers.clear()
        render = self.scene.render
        for name in SAVED_RENDER:
            if name in self._saved:
                setattr(render, name, self._saved[name])
        for name in SAVED_IMAGE:
            if f"image.{name}" in self._saved:
                setattr(render.image_settings, name, self._saved[f"image.{name}"])
        if "cycles.samples" in self._saved:
            self.scene.cycles.samples = self._saved["cycles.samples"]
        if "camera" in self._saved:
            self.scene.camera = self._saved["camera"]
        for obj, hide in self._saved.get("hidden", []):
            obj.hide_render = hide
        if not self.cancelled and not self.error and self.done == self.total and self.on_done is not None:
            self.on_done(self)
