"""Work on Blender's main thread that takes more than one event: check the settings with the server, render the
views one per step (:mod:`.render_session`), then hand the upload to the worker thread.

A task is stepped by its modal operator's timer events where there is a window (Esc cancels), or by the add-on's
timer callback (``runtime.pump``) where there is none (background, the ``bpy`` module: tests and the demo). One task
runs at a time (``runtime.Runtime.task``); its progress shows in the panel and the status bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core import worker_api as api
from .render_session import RenderSession


class Refused(ValueError):
    """A check refused the work; its message is for the user as it is (it names the cause and what to do)."""


@dataclass
class Task:
    """Validate (optional) -> render (optional) -> ``submit`` (hands commands to the worker)."""

    name: str
    """What the user pressed ("Edit", "Preview instruction", "Export dataset")."""
    submit: Callable[[Task], None]
    """Called once everything is rendered: builds and sends the worker's command."""
    render: RenderSession | None = None
    validate: Any = None
    """An ``api.Estimate`` to send first: the server's rules decide before anything renders."""
    state: str = "starting"
    """starting, validating, rendering, done, cancelled, failed."""
    error: str = ""
    _estimate_round: int = -1
    log: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state in ("starting", "validating", "rendering")

    def progress_text(self) -> str:
        if self.state == "validating":
            return f"{self.name}: checking the settings with the backend"
        if self.state == "rendering" and self.render is not None:
            return f"{self.name}: {self.render.progress_text()}"
        return f"{self.name}: {self.state}"

    def fraction(self) -> float:
        return self.render.fraction if self.render is not None and self.state == "rendering" else 0.0

    def cancel(self) -> None:
        if self.render is not None and self.state == "rendering":
            self.render.cancel()
        if self.running:
            self.state = "cancelled"
        if self.render is not None:
            self.render.finish()  # the scene's settings come back now, even between two steps

    def tick(self, runtime: Any) -> bool:
        """Advance by one step; False once the task is over."""
        if self.state == "starting":
            if self.validate is not None and runtime.state.can("edit_estimate_request"):
                self._estimate_round = runtime.state.steering.estimate_answers
                runtime.submit(self.validate)
                self.state = "validating"
                return True
            self._start_rendering()
        if self.state == "validating":
            steering = runtime.state.steering
            if steering.estimate_answers <= self._estimate_round:
                return True  # no answer yet
            if steering.estimate_error:
                self.state, self.error = "failed", steering.estimate_error
                return False
            self._start_rendering()
        if self.state == "rendering" and self.render is not None:
            if self.render.step():
                return True
            if self.render.cancelled:
                self.state = "cancelled"
                return False
            if self.render.error:
                self.state, self.error = "failed", self.render.error
                return False
        if self.state == "rendering":
            try:
                self.submit(self)
            except Refused as exc:
                self.state, self.error = "failed", str(exc)
                return False
            except Exception as exc:
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                return False
            self.state = "done"
        return False

    def _start_rendering(self) -> None:
        self.state = "rendering"
        if self.render is not None:
            self.render.begin()


def estimate_command(request: Any, num_views: int, width: int, height: int) -> api.Estimate:
    return api.Estimate(request, num_views, width, height)
