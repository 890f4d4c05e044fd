"""The edit job runner shared by the CLI and the server: validate -> reconstruct -> Iterative Dataset Update -> export.

No sockets here: everything the outside world sees goes through :class:`JobCallbacks`, called from the thread that
runs :meth:`EditEngine.run`. Cancellation is a ``threading.Event`` checked before every NeRF step; previews at
arbitrary cameras are requested from any thread with :meth:`EditEngine.request_preview` and served between steps.

Job directory layout (every file is written atomically; the input scene is never modified)::

    JOBDIR/
      config.json                  EditJobConfig the job runs with (a resumed job re-uses it)
      state.json                   JobState: status, phase, step, edits done, newest checkpoint
      dataparser_transforms.json   nerfstudio's input -> NeRF frame transform (``p_ns = s (R p + t)``)
      edited/<image path>.png      newest edited image of each view (relative paths as in transforms.json)
      checkpoints/step-*.ckpt      nerfstudio-layout checkpoints (newest ``keep_checkpoints``)
      checkpoints/reconstruction.ckpt   the NeRF of the original scene, before any edit
      history/step-*/<image>.png   renders of a fixed set of views every ``history_every`` editing steps
      exports/point_cloud.ply      coloured point cloud, input frame
      exports/mesh.ply|obj         vertex-coloured Poisson mesh, input frame
      manifest.json                what was produced, with paths relative to JOBDIR

Resume: run again with the same job directory. The job continues from its newest checkpoint, with the edited images
already in ``edited/`` and the edit sequence (view order, noise levels) where it stopped.
"""

from __future__ import annotations

import queue
import threading
import traceback
from pathlib import Path
from typing import Any

from backend.config import EditJobConfig
from backend.job.types import (
    JobCallbacks,
    JobResult,
    PreviewCamera,
    is_expected_failure,
)
from backend.scene import load_scene


class EditEngine:
    """Runs one edit job. ``editor``: an ImageEditor, or None to load ``config.editor.source`` lazily."""

    def __init__(self, config: EditJobConfig, editor: Any = None, *, nerf_checkpoint: Path | str | None = None,
                 preview_interval_s: float = 2.0, progress_interval_s: float = 0.5) -> None:
        self.config = config
        self.editor = editor
        self.nerf_checkpoint = Path(nerf_checkpoint) if nerf_checkpoint is not None else None
        """A trained nerfacto checkpoint of the original scene (same nerfacto settings, all views): skips the
        reconstruction phase. Only used when the job directory has no checkpoint of its own."""
        self.preview_interval_s = preview_interval_s
        """Minimum seconds between automatic previews of edited images (requested previews are not throttled)."""
        self.progress_interval_s = progress_interval_s
        """Minimum seconds between progress callbacks (phase changes and the last step always report)."""
        self.preview_requests: queue.Queue[PreviewCamera] = queue.Queue()
        """Cameras to render between steps (:meth:`request_preview`)."""

    def request_preview(self, camera: PreviewCamera) -> None:
        """Thread-safe: render ``camera`` before the next NeRF step; the image arrives through ``on_preview``."""
        self.preview_requests.put(camera)

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
