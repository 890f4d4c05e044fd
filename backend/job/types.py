"""What one edit job reports and returns: the vocabulary shared by the engine, its runner, the CLI and the server
(no torch, no nerfstudio: importing it is cheap)."""

from __future__ import annotations

import errno
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backend.config import EditJobConfig
from backend.scene import PinholeCamera

Image = np.ndarray  # H W 3 uint8


@dataclass
class Progress:
    phase: str
    """The protocol's working state: reconstructing | editing | exporting"""
    step: int
    """Global NeRF step (reconstruction + editing)."""
    total_steps: int
    phase_step: int
    phase_total: int
    losses: dict[str, float]
    eta_seconds: float | None
    """Estimated time to the end of the NeRF steps (from the recent step rate)."""
    edits_done: int = 0
    points_found: int = 0
    """While exporting: opaque points found so far (``phase_step``/``phase_total`` then count rays shot)."""


@dataclass(frozen=True)
class PreviewCamera(PinholeCamera):
    """A camera to render a preview from (e.g. Blender's viewport), in the input scene's frame."""

    name: str = "viewport"


@dataclass
class SnapshotExportTask:
    """A request to export a snapshot of the running job, served between its NeRF steps."""

    step: int
    stop: threading.Event
    on_progress: Callable[[Any], None]
    """Receives ``backend.export.ExportProgress`` after every ray chunk."""
    on_done: Callable[[Any, BaseException | None], None]
    """``(SnapshotExport, None)`` when done, ``(None, error)`` when it failed or was stopped."""


@dataclass
class JobResult:
    status: str
    """done | cancelled | failed"""
    job_dir: Path
    steps: int = 0
    edits_done: int = 0
    manifest: Path | None = None
    point_cloud: Path | None = None
    mesh: Path | None = None
    error: str | None = None
    error_kind: str | None = None
    """Class name of the error: SceneError, LpipsWeightsMissing, EditorWeightsMissing, ..."""
    geometry_error: str | None = None
    """A finished job without mesh / point cloud: why (e.g. a NeRF still too transparent to export)."""
    expected: bool = False
    """A failure with a message that says what to do (see :func:`is_expected_failure`), not a bug."""


#: Failures whose message tells the user what is wrong and what to do: no traceback needed to act on them.
EXPECTED_FAILURES = ("SceneError", "EditorWeightsMissing", "LpipsWeightsMissing", "JobDirError", "ValidationError",
                     "JobStoreError", "SimulatedTargetsMissing")


def is_expected_failure(error: BaseException) -> bool:
    """Expected: the kinds above, and the operating system refusing a file (disk full, permissions, missing)."""
    if type(error).__name__ in EXPECTED_FAILURES:
        return True
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                                                          errno.EROFS, errno.ENOENT)


def _ignore(*args: Any) -> None:
    return None


@dataclass
class JobCallbacks:
    """Observers of a job; all optional, all called from the engine's thread. Keep them quick."""

    on_state: Callable[[str, str], None] = _ignore
    """(state, detail) in the protocol's job states: preparing, reconstructing, editing, exporting, done, cancelled,
    failed."""
    on_progress: Callable[[Progress], None] = _ignore
    on_preview: Callable[[str, Image], None] = _ignore
    """(name, image): ``edit/<image>`` after edits (throttled), ``snapshot/<image>``, or a requested camera's name."""
    on_log: Callable[[str], None] = _ignore
    on_result: Callable[[JobResult], None] = _ignore
    on_snapshot: Callable[[Any], None] = _ignore
    """A NeRF snapshot was kept (``backend.job.snapshots.SnapshotRecord``)."""
    on_snapshot_rotated: Callable[[Any], None] = _ignore
    """An older snapshot was rotated away to stay within the job's snapshot limits (its record)."""


class EngineSettings(Protocol):
    """What a job run reads from the engine that started it (``backend.engine.EditEngine``)."""

    config: EditJobConfig
    editor: Any
    preview_interval_s: float
    progress_interval_s: float
    preview_requests: queue.Queue[PreviewCamera]
    export_requests: queue.Queue[SnapshotExportTask]
    calls: queue.Queue[Callable[[Any], None]]
    keeps_snapshot: Callable[[Path], bool]
    refuses_snapshot: Callable[[], str | None]
    snapshot_lock: threading.Lock
