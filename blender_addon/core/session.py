"""Client-side view of the backend connection and the current job, updated only by worker notices.

:meth:`SessionState.apply` is a pure state machine: it takes a notice and returns the *actions* the Blender side
must carry out (show a preview, report a message, import results). The bpy shell executes them; tests check them
without Blender.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import worker_api as api
from .protocol_link import protocol
from .session_actions import (
    Action,
    ImportResults,
    PreviewSnapshot,
    RememberJob,
    Report,
    SendCommand,
    ShowInstructionGrid,
    ShowPreview,
    ShowThumbnail,
)
from .steering import Steering

m = protocol.messages
ConnectionState = Literal["disconnected", "connecting", "connected", "lost"]
PHASE_LABELS = {"preparing": "Preparing", "reconstructing": "Reconstructing", "editing": "Editing",
                "exporting": "Exporting"}


# ---------------------------------------------------------------- state
@dataclass
class JobView:
    job_id: str
    state: str = "queued"
    queue_position: int | None = None
    phase: str = ""
    step: int = 0
    total_steps: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    message: str = ""
    error: str = ""
    artifacts: list[Any] = field(default_factory=list)
    scene_id: str = ""
    """The uploaded scene (a chained edit continues on it)."""

    @property
    def finished(self) -> bool:
        return self.state in m.FINAL_STATES

    @property
    def has_results(self) -> bool:
        """Done, with something to import: geometry, or textures baked onto the user's objects."""
        return self.state == "done" and any(is_importable(a) for a in self.artifacts)


def is_baked(artifact: Any) -> bool:
    """A texture baked onto one of the uploaded objects (its metadata names the surface)."""
    return isinstance(artifact.metadata.get("baked_surface"), str)


def is_importable(artifact: Any) -> bool:
    return artifact.kind in ("mesh", "pointcloud") or is_baked(artifact)


@dataclass
class SessionState:
    connection: ConnectionState = "disconnected"
    url: str = ""
    server: Any = None
    """``HelloReply`` of the connected server."""
    job: JobView | None = None
    upload: tuple[int, int] | None = None
    """(done, total) bytes while a scene uploads."""
    fetch: tuple[str, int, int] | None = None
    last_error: str = ""
    history: deque[PreviewSnapshot] = field(default_factory=lambda: deque(maxlen=64))
    """The live previews received, oldest first (bounded; the iterations to keep are the server's snapshots)."""
    log_lines: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    downloaded: dict[str, Path] = field(default_factory=dict)
    """Artifact name -> file of downloads made without importing (``FetchResults(import_files=False)``)."""
    steering: Steering = field(default_factory=Steering)
    """Snapshots, estimate and 2D preview of the followed job."""
    results_folder: Path | None = None
    """Where downloads go (the runtime's scratch folder; thumbnails are fetched there)."""

    # ------------------------------------------------------------------ display
    @property
    def busy(self) -> bool:
        return self.upload is not None or self.fetch is not None or (self.job is not None and not self.job.finished)

    def status_line(self) -> str:
        if self.connection == "connecting":
            return "Connecting..."
        if self.connection != "connected":
            return "Connection lost" if self.connection == "lost" else "Not connected"
        server = self.server
        parts = [f"Connected (protocol {server.protocol_version})"]
        parts.append(f"GPU: {server.gpu_name}" if server.gpu_name else f"device: {server.device_status or 'CPU'}")
        job = self.job
        if job is not None and job.state == "queued" and job.queue_position:
            parts.append(f"queue position {job.queue_position}")
        return ", ".join(parts)

    def progress_text(self) -> str:
        if self.upload is not None:
            done, total = self.upload
            return f"Uploading scene {done / max(total, 1):.0%}"
        if self.fetch is not None:
            name, done, total = self.fetch
            return f"Downloading {name} {done / max(total, 1):.0%}"
        job = self.job
        if job is None:
            return ""
        if job.finished:
            return {"done": "Done", "cancelled": "Cancelled"}.get(job.state, f"Failed: {job.error}")
        if job.state == "queued":
            return f"Queued (position {job.queue_position})" if job.queue_position else "Queued"
        phase = PHASE_LABELS.get(job.phase, job.state.capitalize())
        if job.phase == "exporting" and job.total_steps:  # the export counts rays shot of its budget, not steps
            text = f"Exporting geometry {job.step / job.total_steps:.0%}"
        else:
            text = f"{phase} {job.step}/{job.total_steps}" if job.total_steps else phase
        eta = protocol.format_duration(job.eta_s)
        return f"{text}, ETA {eta}" if eta else text

    def progress_fraction(self) -> float:
        if self.upload is not None:
            return self.upload[0] / max(self.upload[1], 1)
        if self.fetch is not None:
            return self.fetch[1] / max(self.fetch[2], 1)
        return self.job.fraction if self.job is not None else 0.0

    # ------------------------------------------------------------------ transitions
    def apply(self, notice: api.Notice, *, remembered_job_id: str = "") -> list[Action]:
        handler = getattr(self, f"_on_{type(notice).__name__.lower()}")
        result: list[Action] = handler(notice, remembered_job_id) if isinstance(notice, api.Connected) else handler(notice)
        return result

    def _on_connected(self, notice: api.Connected, remembered_job_id: str) -> list[Action]:
        self.connection, self.url, self.server, self.last_error = "connected", notice.url, notice.hello, ""
        actions: list[Action] = [Report("INFO", f"Connected to {notice.hello.server_name} at {notice.url}")]
        wanted = remembered_job_id or (self.job.job_id if self.job else "")
        match = [job for job in notice.jobs if job.job_id == wanted]
        if not match:  # otherwise follow the newest unfinished job
            match = [job for job in notice.jobs if job.state not in m.FINAL_STATES][-1:]
        if match:
            snap = match[0]
            self.job = JobView(snap.job_id, snap.state, snap.queue_position, error=snap.error_message or "",
                               artifacts=list(snap.artifacts), scene_id=snap.scene_id)
            if snap.progress is not None:
                self._set_progress(snap.progress)
            actions += [RememberJob(snap.job_id), Report("INFO", f"Following job {snap.job_id} ({snap.state})")]
            if self.can("nerf_snapshot_list_request"):
                actions.append(SendCommand(api.ListSnapshots(snap.job_id)))
        return actions

    def _on_jobslisted(self, notice: api.JobsListed) -> list[Action]:
        """Progress the server dropped while Blender was busy: the followed job's is set from the list (states are
        never dropped: they arrive as events)."""
        job = self.job
        listed = [snap for snap in notice.jobs if job is not None and snap.job_id == job.job_id]
        if job is not None and listed and not job.finished:
            job.queue_position = listed[0].queue_position
            if listed[0].progress is not None:
                self._set_progress(listed[0].progress)
        return []

    def can(self, msg_type: str) -> bool:
        """Whether the connected server handles ``msg_type`` (an older or scripted one may not)."""
        return self.server is not None and msg_type in (self.server.capabilities or [])

    def _on_disconnected(self, notice: api.Disconnected) -> list[Action]:
        self.upload = self.fetch = None
        if notice.reason:
            self.connection, self.last_error = "lost", notice.reason
            return [Report("ERROR", notice.reason)]
        self.connection = "disconnected"
        return [Report("INFO", "Disconnected; jobs keep running on the backend")]

    def _on_failed(self, notice: api.Failed) -> list[Action]:
        self.last_error = notice.message
        if notice.action == "Connect":
            self.connection = "disconnected"
        if notice.action == "Edit":
            self.upload = None
        if notice.action == "Import result":
            self.fetch = None
        if notice.action == "Estimate":
            self.steering.estimate_error = notice.message
            self.steering.estimate_answers += 1
        return [Report("ERROR", notice.message)]

    def _on_uploadprogress(self, notice: api.UploadProgress) -> list[Action]:
        self.upload = (notice.done_bytes, notice.total_bytes)
        return []

    def _on_fetchprogress(self, notice: api.FetchProgress) -> list[Action]:
        self.fetch = (notice.name, notice.done_bytes, notice.total_bytes)
        return []

    def _on_jobstarted(self, notice: api.JobStarted) -> list[Action]:
        self.upload = None
        self.history.clear()
        self.steering.snapshots.clear()
        self.job = JobView(notice.job_id, notice.state, notice.queue_position, scene_id=notice.scene_id)
        return [RememberJob(notice.job_id), Report("INFO", f"Edit job {notice.job_id} started ({notice.state})")]

    def _on_previewready(self, notice: api.PreviewReady) -> list[Action]:
        if self.job is None or notice.job_id != self.job.job_id:
            return []
        snapshot = PreviewSnapshot(notice.step, notice.width, notice.height, notice.pixels, notice.camera_index)
        if self.history and self.history[-1].step == notice.step:
            self.history.pop()  # a resent preview (reconnect) replaces, not duplicates
        self.history.append(snapshot)
        return [ShowPreview(snapshot)]

    def _on_resultsfetched(self, notice: api.ResultsFetched) -> list[Action]:
        self.fetch = None
        if not notice.import_files:
            self.downloaded.update(notice.files)
            view = self.steering.snapshots.get(notice.snapshot_step) if notice.snapshot_step is not None else None
            if view is not None and notice.files and view.thumbnail is None:
                view.thumbnail = sorted(notice.files.values())[0]
                return [ShowThumbnail(view.step, view.thumbnail)]
            return [Report("INFO", f"Downloaded {len(notice.files)} file(s) of job {notice.job_id}")]
        kinds = {artifact.name: artifact.kind for artifact in notice.artifacts}
        camera_index = {a.name: int(a.metadata["camera_index"]) for a in notice.artifacts
                        if isinstance(a.metadata.get("camera_index"), int)}
        baked = {a.metadata["baked_surface"]: notice.files[a.name] for a in notice.artifacts
                 if is_baked(a) and a.name in notice.files}
        files = {name: path for name, path in notice.files.items() if path not in baked.values()}
        if any(a.metadata.get("textured") for a in notice.artifacts):  # it renders like the NeRF: not both meshes
            files = {name: path for name, path in files.items() if kinds.get(name) != "mesh" or any(
                a.name == name and a.metadata.get("textured") for a in notice.artifacts)}
        return [ImportResults(notice.job_id, files, kinds, camera_index, notice.snapshot_step, baked)]

    def _on_answered(self, notice: api.Answered) -> list[Action]:
        content, steering = notice.content, self.steering
        if isinstance(content, m.EditEstimateReply):
            steering.estimate, steering.estimate_error = content, ""
            steering.estimate_answers += 1
            return []
        if isinstance(content, m.NerfSnapshotListReply):
            if self.job is None or content.job_id != self.job.job_id:
                return []
            return [self._thumbnail_fetch(content.job_id, step) for step in steering.set_snapshots(content.snapshots)]
        if isinstance(content, m.InstructionPreviewReply):
            steering.start_preview(content)
            return [Report("INFO", f"Previewing the instruction: {content.cells} edits with {content.editor}")]
        if isinstance(content, m.JobContinueReply):
            self.job = JobView(content.job_id, content.state, content.queue_position,
                               scene_id=self.job.scene_id if self.job else "")
            return [Report("INFO", f"Job {content.job_id} continues to {content.total_steps} editing steps")]
        if isinstance(content, m.NerfSnapshotExportReply):
            view = steering.snapshots.get(content.step)
            if view is not None and content.state != "done":  # done: its event follows at once
                view.export_state = content.state
            return []
        if isinstance(content, m.NerfSnapshotPinReply):
            view = steering.snapshots.get(content.step)
            if view is not None:
                view.info = dataclasses.replace(view.info, pinned=content.pinned)
            return [Report("INFO", f"Snapshot {content.step} pinned: the job never rotates it away" if content.pinned
                           else f"Snapshot {content.step} unpinned: it may be rotated away, oldest first")]
        if isinstance(content, m.NerfSnapshotDeleteReply):
            steering.snapshots.pop(content.step, None)
            return [Report("INFO", f"Deleted snapshot {content.step} ({content.freed_bytes / 2**20:.1f} MiB freed)")]
        return []

    def _on_previewimage(self, notice: api.PreviewImage) -> list[Action]:
        if self.steering.preview_event(notice.event, notice.pixels):
            return [ShowInstructionGrid(self.steering.preview)]
        preview = self.steering.preview
        if notice.event.kind == "failed" and preview is not None and preview.preview_id == notice.event.preview_id:
            if preview.cancelled:
                return [Report("INFO", "Preview instruction cancelled")]
            return [Report("ERROR", f"Preview instruction failed: {preview.failed}")]
        return []

    def _thumbnail_fetch(self, job_id: str, step: int) -> SendCommand:
        """Download the first render of a snapshot (its thumbnail in the panel)."""
        view = self.steering.snapshots[step]
        first = sorted(view.info.views, key=lambda a: a.name)[0].name
        folder = (self.results_folder or Path(".")) / job_id
        return SendCommand(api.FetchResults(job_id, folder, ("other",), import_files=False, snapshot_step=step,
                                            names=(first,)))

    def _set_progress(self, progress: Any) -> None:
        job = self.job
        assert job is not None
        job.phase, job.step, job.total_steps = progress.phase, progress.step, progress.total_steps
        job.fraction, job.eta_s = progress.fraction, progress.eta_s

    def _on_serverevent(self, notice: api.ServerEvent) -> list[Action]:
        content = notice.content
        job = self.job
        if isinstance(content, m.JobLogEvent):
            if content.job_id in (None, job.job_id if job else None):
                self.log_lines.append(content.text)
            return [Report("WARNING", content.text)] if content.level in ("warning", "error") else []
        if job is None or getattr(content, "job_id", None) != job.job_id:
            return []  # heartbeats, other clients' jobs
        if isinstance(content, m.JobProgressEvent):
            self._set_progress(content.progress)
            return []
        if isinstance(content, m.JobResultEvent):
            job.artifacts = list(content.artifacts)
            if not any(is_importable(a) for a in job.artifacts):  # never "press Import result" with nothing to import
                return [Report("WARNING", f"Job {job.job_id} is done but gave back nothing to import (edited images "
                                          "only): see its message, or import one of its snapshots")]
            return [Report("INFO", f"Results of job {job.job_id} are ready: press Import result")]
        if isinstance(content, m.NerfSnapshotEvent):
            is_new = self.steering.update_snapshot(content)
            return [self._thumbnail_fetch(job.job_id, content.snapshot.step)] if is_new else []
        if isinstance(content, m.NerfSnapshotExportEvent):
            ready = self.steering.update_export(content)
            if content.state == "failed":
                return [Report("ERROR", f"Exporting snapshot {content.step} failed: {content.message}")]
            if ready is None:
                return []
            folder = (self.results_folder or Path(".")) / job.job_id / f"snapshot-{ready.step}"
            names = tuple(a.name for a in ready.info.geometry)
            return [SendCommand(api.FetchResults(job.job_id, folder, ("mesh", "pointcloud"), snapshot_step=ready.step,
                                                 names=names, baked=True))]
        if isinstance(content, m.JobStateEvent):
            previous, job.state = job.state, content.state
            job.queue_position, job.message = content.queue_position, content.message
            if content.state == "failed":
                job.error = f"{content.error_name or 'Error'}: {content.error_message or content.message}"
                return [Report("ERROR", f"Edit job {job.job_id} failed: {job.error}")] if previous != "failed" else []
            if content.state == "cancelled" and previous != "cancelled":
                return [Report("INFO", f"Edit job {job.job_id} cancelled")]
            if content.state == "done":
                job.fraction = 1.0
        return []
