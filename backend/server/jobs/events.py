"""Engine callbacks -> protocol events for one running job, with previews throttled to the client's rate and to a
share of the training time."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from backend.engine import EditEngine
from backend.job.types import JobCallbacks, PreviewCamera, Progress
from protocol import ValidationError, schema
from protocol import messages as m

log = logging.getLogger(__name__)

PROGRESS_LOG_INTERVAL_S = 30.0
"""Progress goes to the server log at most this often (clients get every progress event)."""


def preview_camera(camera: m.Camera, max_side: int, name: str) -> PreviewCamera:
    """A protocol camera (input frame, OpenGL axes) scaled so its longest side is at most ``max_side``."""
    scale = min(1.0, max_side / max(camera.w, camera.h))
    width, height = max(1, round(camera.w * scale)), max(1, round(camera.h * scale))
    return PreviewCamera(c2w=np.asarray(camera.transform_matrix, dtype=np.float64), fl_x=camera.fl_x * width / camera.w,
                         fl_y=camera.fl_y * height / camera.h, cx=camera.cx * width / camera.w,
                         cy=camera.cy * height / camera.h, width=width, height=height, name=name)


@dataclass
class PreviewThrottle:
    """When the next preview may be rendered: at most ``max_rate_hz``, and rendering may take at most ``budget`` of
    the wall time (a preview that took 0.2 s waits 0.2 / budget seconds before the next one)."""

    settings: m.PreviewSettings
    budget: float
    next_due: float = 0.0
    requested_at: float | None = None
    render_seconds: list[float] = field(default_factory=list)

    def due(self, now: float) -> bool:
        return self.settings.enabled and self.requested_at is None and now >= self.next_due

    def rendered(self, now: float) -> float:
        took = now - (self.requested_at if self.requested_at is not None else now)
        self.render_seconds.append(took)
        self.requested_at = None
        self.next_due = now + max(1.0 / self.settings.max_rate_hz, took / self.budget)
        return took


class JobEvents:
    """Builds the :class:`JobCallbacks` of one job run; every callback publishes to the job's subscribers."""

    def __init__(self, job_id: str, engine: EditEngine, cameras: list[m.Camera], preview: m.PreviewSettings,
                 publish: Callable[[Any, list[bytes]], None], on_state: Callable[[str, str], None],
                 budget: float, on_snapshot: Callable[[Any], None] = lambda snapshot: None,
                 on_snapshot_rotated: Callable[[Any], None] = lambda snapshot: None) -> None:
        self.job_id = job_id
        self.engine = engine
        self.cameras = cameras
        self.publish = publish
        self.on_state_change = on_state
        self.on_snapshot = on_snapshot
        self.on_snapshot_rotated = on_snapshot_rotated
        self.started = time.monotonic()
        self.step = 0
        self.progress: m.Progress | None = None
        self.last_preview: tuple[m.JobPreviewEvent, bytes] | None = None
        self._last_progress_log = time.monotonic()
        self._lock = threading.Lock()
        self.throttle = PreviewThrottle(preview, budget)

    def callbacks(self) -> JobCallbacks:
        return JobCallbacks(on_state=self._state, on_progress=self._progress, on_preview=self._preview,
                            on_log=self._log, on_snapshot=self.on_snapshot,
                            on_snapshot_rotated=self.on_snapshot_rotated)

    def set_preview(self, settings: m.PreviewSettings) -> None:
        """New camera / rate from the client (any thread): the next preview is rendered at once."""
        with self._lock:
            self.throttle.settings = settings
            self.throttle.next_due = 0.0

    # ------------------------------------------------------------------ engine callbacks (engine thread)
    def _state(self, state: str, detail: str) -> None:
        if state in m.RUNNING_STATES:  # the final states are the service's to announce, with the job's result
            self.on_state_change(state, detail)

    def _progress(self, progress: Progress) -> None:
        self.step = progress.step
        total = max(progress.total_steps, 1)
        losses = {name: float(value) for name, value in progress.losses.items() if math.isfinite(value)}
        event = m.Progress(
            phase=progress.phase, step=progress.phase_step,  # type: ignore[arg-type]
            total_steps=progress.phase_total, fraction=min(1.0, progress.step / total),
            eta_s=progress.eta_seconds, elapsed_s=time.monotonic() - self.started, losses=losses,
            images_edited=progress.edits_done)
        try:  # what the job list holds is encoded for every client: a value out of the protocol's bounds is a bug
            schema.encode(event, "progress")  # to log, never a state that breaks every listing
        except ValidationError as error:
            log.error("[%s] progress not announced (%s): %s", self.job_id, error, progress)
            return
        self.progress = event
        self.publish(m.JobProgressEvent(job_id=self.job_id, progress=self.progress), [])
        now = time.monotonic()
        if now - self._last_progress_log >= PROGRESS_LOG_INTERVAL_S:
            self._last_progress_log = now
            log.info("[%s] %s step %d/%d, losses %s, eta %s", self.job_id, self.progress.phase, self.progress.step,
                     self.progress.total_steps, {k: round(v, 5) for k, v in losses.items()},
                     f"{progress.eta_seconds:.0f} s" if progress.eta_seconds is not None else "?")
        self._maybe_request_preview()

    def _maybe_request_preview(self) -> None:
        now = time.monotonic()
        with self._lock:
            if not self.throttle.due(now):
                return
            settings = self.throttle.settings
            camera = settings.camera or self.cameras[0]
            self.throttle.requested_at = now
        name = "preview/client" if settings.camera is not None else "preview/camera-0"
        self.engine.request_preview(preview_camera(camera, settings.max_side, name))

    def _preview(self, name: str, image: np.ndarray) -> None:
        if not name.startswith("preview/"):
            return  # the engine's own edit/history previews: the client asked for one viewpoint only
        with self._lock:
            took = self.throttle.rendered(time.monotonic())
            camera_index = None if self.throttle.settings.camera is not None else 0
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        event = m.JobPreviewEvent(job_id=self.job_id, step=self.step,
                                  image=m.ImageInfo(dtype="uint8", shape=list(pixels.shape)), camera_index=camera_index)
        data = pixels.tobytes()
        self.last_preview = (event, data)
        log.debug("preview %s %s rendered in %.3f s", self.job_id, pixels.shape, took)
        self.publish(event, [data])

    def _log(self, line: str) -> None:
        text = line.rstrip()
        # A failure's traceback is for the log file; the client shows the failed state with its error message.
        level = ("debug" if text.startswith(("Traceback", "debug:")) else
                 "warning" if text.startswith("warning:") else "info")
        # server.log: an unexpected failure's traceback always (a bug report needs it), an expected one's
        # ("debug: Traceback ...", its message says what to do) only at --log-level debug
        severity = (logging.DEBUG if text.startswith("debug:") else logging.INFO if level == "info"
                    else logging.WARNING)
        log.log(severity, "[%s] %s", self.job_id, text)
        self.publish(m.JobLogEvent(text=text[-16000:], level=level, job_id=self.job_id,  # type: ignore[arg-type]
                                   time=datetime.now(UTC).isoformat()), [])
