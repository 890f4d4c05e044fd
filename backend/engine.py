"""The edit job runner shared by the CLI and the server: validate -> reconstruct -> Iterative Dataset Update -> export.

No sockets here: everything the outside world sees goes through :class:`JobCallbacks`, called from the thread that
runs :meth:`EditEngine.run`. Cancellation is a ``threading.Event`` checked before every NeRF step; previews at
arbitrary cameras are requested from any thread with :meth:`EditEngine.request_preview` and served between steps.

Job directory layout (every file is written atomically; the input scene is never modified)::

    JOBDIR/
      config.json                  EditJobConfig the job runs with (a resumed job re-uses it)
      config.yml                   nerfstudio's TrainerConfig of the job's NeRF: ns-viewer / ns-export --load-config
      state.json                   JobState: status, phase, step, edits done, newest checkpoint
      input/transforms.json        the training views as nerfstudio's dataparser reads them
      dataparser_transforms.json   nerfstudio's input -> NeRF frame transform (``p_ns = s (R p + t)``)
      edited/<image path>.png      newest edited image of each view (relative paths as in transforms.json)
      checkpoints/step-*.ckpt      nerfstudio-layout checkpoints for resuming (newest ``keep_checkpoints``)
      snapshots/step-*/            NeRF snapshots (backend.job.snapshots): after reconstruction, every
                                   ``snapshot_every`` editing steps and where the job ends; weights, renders, and
                                   the mesh + point cloud once exported (the final one's by the job itself)
      start_images/<image>.png     a chained edit's starting renders (``config.start``)
      edited_capture/              the capture in the user's own layout with the edited images
      manifest.json                what was produced, with paths relative to JOBDIR

Resume: run again with the same job directory. The job continues from its newest checkpoint, with the edited images
already in ``edited/`` and the edit sequence (view order, noise levels) where it stopped. To run more steps, extend
the job first (:meth:`backend.job.jobdir.JobDir.extend`).
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.config import EditJobConfig
from backend.job.types import (
    JobCallbacks,
    JobResult,
    PreviewCamera,
    SnapshotExportTask,
    is_expected_failure,
)
from backend.scene import load_scene


class EditEngine:
    """Runs one edit job. ``editor``: an ImageEditor, or None to load ``config.editor.source`` lazily."""

    def __init__(self, config: EditJobConfig, editor: Any = None, *, preview_interval_s: float = 2.0,
                 progress_interval_s: float = 0.5) -> None:
        self.config = config
        self.editor = editor
        self.preview_interval_s = preview_interval_s
        """Minimum seconds between automatic previews of edited images (requested previews are not throttled)."""
        self.progress_interval_s = progress_interval_s
        """Minimum seconds between progress callbacks (phase changes and the last step always report)."""
        self.preview_requests: queue.Queue[PreviewCamera] = queue.Queue()
        """Cameras to render between steps (:meth:`request_preview`)."""
        self.export_requests: queue.Queue[SnapshotExportTask] = queue.Queue()
        """Snapshots to export between steps (:meth:`request_export`)."""
        self.calls: queue.Queue[Callable[[Any], None]] = queue.Queue()
        """Work to run between steps with the job's editor (:meth:`call_between_steps`)."""
        self._calls_lock = threading.Lock()
        self._calls_closed = False
        self.keeps_snapshot: Callable[[Path], bool] = lambda model: False
        """Whether a snapshot (by its weights' path) must survive rotation: a server names those another job
        starts from or that are being exported."""
        self.refuses_snapshot: Callable[[], str | None] = lambda: None
        """Why a scheduled snapshot may not be kept now (a server's snapshots fill its space), or None."""
        self.snapshot_lock = threading.Lock()
        """Held while the job rotates its snapshots away (a server pins snapshots under the same lock)."""

    def request_preview(self, camera: PreviewCamera) -> None:
        """Thread-safe: render ``camera`` before the next NeRF step; the image arrives through ``on_preview``."""
        self.preview_requests.put(camera)

    def request_export(self, task: SnapshotExportTask) -> None:
        """Thread-safe: export a snapshot of the running job before its next NeRF step (its pipeline, with the
        snapshot's weights swapped in and back); the result arrives through ``task.on_done``."""
        self.export_requests.put(task)

    def call_between_steps(self, work: Callable[[Any], None]) -> bool:
        """Thread-safe: run ``work(editor)`` in the job's thread before its next NeRF step, with the job's own editor
        (e.g. a 2D instruction preview while the job runs: one model in memory, not two). False once the job has
        ended (:meth:`close_calls`): the work was not taken."""
        with self._calls_lock:
            if self._calls_closed:
                return False
            self.calls.put(work)
            return True

    def close_calls(self) -> list[Callable[[Any], None]]:
        """The job has ended: the work it was given and did not serve; later calls are refused, never lost."""
        with self._calls_lock:
            self._calls_closed = True
            pending = []
            while not self.calls.empty():
                pending.append(self.calls.get_nowait())
            return pending

    def run(self, scene_dir: Path | str, job_dir: Path | str, callbacks: JobCallbacks | None = None,
            stop: threading.Event | None = None) -> JobResult:
        """Run (or resume) the job; never raises for job failures: they come back as ``status='failed'``."""
        from backend.job.runner import JobRun  # heavy imports (torch, nerfstudio) only once a job really runs

        callbacks = callbacks or JobCallbacks()
        stop = stop or threading.Event()
        job_dir = Path(job_dir)
        try:
            callbacks.on_state("preparing", str(scene_dir))
            scene = load_scene(scene_dir)
            job = JobRun(self, scene, job_dir, callbacks, stop)
            result = job.run()
        except Exception as error:  # reported, not raised: the server must survive any job failure
            result = JobResult("failed", job_dir, error=str(error), error_kind=type(error).__name__,
                               expected=is_expected_failure(error))
            # The traceback is for the log file; for an expected failure (bad scene, missing weights, a full disk)
            # it is marked debug, so a user sees only the message, which says what to do.
            trace = traceback.format_exc()
            callbacks.on_log(f"debug: {trace}" if result.expected else trace)
            _mark_failed(job_dir, str(error))
            callbacks.on_state("failed", str(error))
        callbacks.on_result(result)
        return result


def _mark_failed(job_dir: Path, message: str) -> None:
    """Record the failure in state.json where it can be: a damaged or unwritable state is left as it is (the
    result already says what failed), since raising here would hide the real error."""
    from backend.job.jobdir import JobDir, JobDirError

    jobs = JobDir(job_dir)
    try:
        state = jobs.read_state()
        if state is None:
            return  # failed before the job directory was set up: nothing to mark
        state.status, state.error = "failed", message
        jobs.write_state(state)
    except (JobDirError, OSError):
        return
