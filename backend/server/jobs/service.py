"""The job service: a FIFO queue run by one worker thread (one heavy job at a time), and the job handlers.

Handlers run in the server loop and only touch in-memory state and small files, so ping, cancel, snapshots and
shutdown are answered at once while a job trains. A job killed with the server (even ``kill -9``) is still
``queued``/running in its record: the next start re-queues it and the engine resumes from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

from backend.config import StartConfig
from backend.engine import EditEngine
from protocol import ValidationError
from protocol import messages as m

from ..core import Request, Server
from .config import JobServiceConfig
from .editors import EditorCache, editor_key
from .estimates import estimate_reply, scene_estimate
from .events import JobEvents
from .instruction_preview import InstructionPreviews
from .requests import check_continue, job_config
from .results import ArtifactIndex
from .snapshots import SnapshotService
from .store import UNFINISHED, JobRecord, JobStore, JobStoreError, new_id
from .upload import SceneUploads

log = logging.getLogger(__name__)

JOB_REQUESTS = ("edit_start_request", "edit_estimate_request", "job_continue_request", "cancel_request",
                "job_snapshot_request", "preview_settings_request", "result_list_request", "result_fetch_request")


class JobService:
    def __init__(self, server: Server, config: JobServiceConfig) -> None:
        self.server, self.config = server, config
        self.store = JobStore(config.jobs_dir)
        self.index = ArtifactIndex()
        self.uploads = SceneUploads(server, self.store, config)
        self.records: dict[str, JobRecord] = {}
        self.queue: deque[str] = deque()
        self.running: str | None = None
        self.stop_running = threading.Event()
        self.events: dict[str, JobEvents] = {}
        """Events of the running job (and the last preview of finished ones, for snapshots)."""
        self.preview_settings: dict[str, m.PreviewSettings] = {}
        self.engine: EditEngine | None = None
        """The running job's engine."""
        self.editors = EditorCache()
        self.snapshots = SnapshotService(self)
        self.previews = InstructionPreviews(self)
        self._condition = threading.Condition()
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="in2n-jobs", daemon=True)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Register the handlers, re-queue unfinished jobs from an earlier run, start the worker."""
        for folder in self.store.remove_interrupted_scenes():
            log.warning("removed %s: an upload whose storing was interrupted", folder)
        self.uploads.register()
        for msg_type in JOB_REQUESTS:
            self.server.register(msg_type, getattr(self, "_" + msg_type.removesuffix("_request")))
        for record in self.store.load_all():
            self.records[record.job_id] = record
            if record.state in UNFINISHED:
                log.info("job %s was %s when the server stopped: re-queued, resumes from its checkpoint",
                         record.job_id, record.state)
                record.state, record.message = "queued", "resumed after a server restart"
                self.store.save(record)
                self.queue.append(record.job_id)
        self.snapshots.start()
        self.previews.start()
        self.server.on_shutdown.append(self.close)
        self._worker.start()

    def close(self, timeout_s: float = 120.0) -> None:
        """Graceful stop: the running job checkpoints and stays queued for the next start."""
        with self._condition:
            self._closing = True
            self.stop_running.set()
            self._condition.notify_all()
        self._worker.join(timeout_s)
        self.snapshots.close()
        self.previews.close()

    # ------------------------------------------------------------------ state
    def _position(self, job_id: str) -> int | None:
        with self._condition:  # the queue changes in the loop thread and the worker
            if job_id == self.running:
                return 0
            if job_id not in self.queue:
                return None
            # with nothing running, the head of the queue is being started by the worker right now
            return self.queue.index(job_id) + (1 if self.running is not None else 0)

    def _set_state(self, record: JobRecord, state: str, message: str = "", error: tuple[str, str] | None = None) -> None:
        """Record and announce a state. Never raises: a record that cannot be written (disk full) is logged with its
        path and errno, kept in memory, announced with that reason, and written with the next state change."""
        record.state, record.message = state, message
        record.error_name, record.error_message = error if error else (None, None)
        try:
            self.store.save(record)
        except JobStoreError as save_error:
            log.error("job %s: %s", record.job_id, save_error)
            message = f"{message} (not saved: {save_error})" if message else f"not saved: {save_error}"
        self.server.publish(record.job_id, m.JobStateEvent(
            job_id=record.job_id, state=state, queue_position=self._position(record.job_id),  # type: ignore[arg-type]
            message=message[:2000], error_name=record.error_name, error_message=record.error_message))

    def _announce_queue(self) -> None:
        with self._condition:
            queued = list(self.queue)
        for job_id in queued:
            record = self.records[job_id]
            self.server.publish(job_id, m.JobStateEvent(job_id=job_id, state="queued",
                                                        queue_position=self._position(job_id), message=record.message))

    def record(self, job_id: str, field: str = "content.job_id") -> JobRecord:
        record = self.records.get(job_id)
        if record is None:
            raise ValidationError(f"no job {job_id!r} on this server", field=field)
        return record

    # ------------------------------------------------------------------ the running job and the editor
    def engine_of(self, job_id: str) -> EditEngine | None:
        """The engine of ``job_id`` while it runs (work can be handed to it between NeRF steps)."""
        with self._condition:
            return self.engine if self.running == job_id else None

    def running_engine(self) -> EditEngine | None:
        with self._condition:
            return self.engine if self.running is not None else None

    def running_editor_key(self) -> tuple[Any, ...] | None:
        engine = self.running_engine()
        return editor_key(engine.config) if engine is not None else None

    def job_starting_from(self, checkpoint: Path) -> str | None:
        """A queued or running job that starts from ``checkpoint`` (a snapshot that must not be deleted yet)."""
        with self._condition:
            waiting = [*self.queue, *([self.running] if self.running else [])]
        for job_id in waiting:
            if self.records[job_id].start_checkpoint == str(checkpoint):
                return job_id
        return None

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._condition:
                while not self.queue and not self._closing:
                    self._condition.wait()
                if self._closing:
                    return
                job_id = self.queue.popleft()
                self.running = job_id
                self.stop_running = threading.Event()
            self._announce_queue()
            try:
                self._run(self.records[job_id])
            except Exception as error:  # the service must outlive any job
                log.exception("job %s crashed the runner", job_id)
                self._finish(self.records[job_id], "failed", str(error), (type(error).__name__, str(error)))
            finally:
                with self._condition:
                    self.running = None

    def _run(self, record: JobRecord) -> None:
        request = record.edit_request()
        config = job_config(request, self.config, self._start_config(record))
        key = editor_key(config)
        engine = EditEngine(config, None, preview_interval_s=1e9, progress_interval_s=0.25)
        engine.keeps_snapshot = lambda model: self.snapshots.in_use(record.job_id, model)
        engine.refuses_snapshot = self.snapshots.refusal
        engine.snapshot_lock = self.snapshots.rotation_lock
        preview = self.preview_settings.get(record.job_id, request.preview)
        events = JobEvents(record.job_id, engine, self.store.cameras(record.scene_id), preview,
                           lambda content, buffers: self.server.publish(record.job_id, content, buffers),
                           lambda state, detail: self._set_state(record, state, detail),
                           self.config.preview_budget,
                           on_snapshot=lambda snapshot: self.snapshots.announce(record.job_id, snapshot),
                           on_snapshot_rotated=lambda snapshot: self.snapshots.announce_deleted(record.job_id,
                                                                                                snapshot))
        self.events[record.job_id] = events
        with self._condition:
            self.engine = engine  # from now on, previews with its editor are handed to it
        engine.editor = self.editors.claim(key)  # a borrowing preview stops before its next DDIM step
        log.info("job %s starts: %r on scene %s", record.job_id, config.prompt, record.scene_id)
        try:
            result = engine.run(self.store.scene_dir(record.scene_id), self.store.work_dir(record.job_id),
                                events.callbacks(), self.stop_running)
        finally:
            with self._condition:
                self.engine = None
            self.editors.release(key, engine.editor)  # before previews are handed back: they use it, never a second
            self._hand_over(record.job_id, engine)
        if result.status == "done":
            artifacts = self.index.artifacts(self.store.work_dir(record.job_id))
            self.server.publish(record.job_id, m.JobResultEvent(job_id=record.job_id, artifacts=artifacts))
            message = f"{result.steps} NeRF steps, {result.edits_done} edits"
            if result.geometry_error:  # the edited images are results; say why the mesh / point cloud are missing
                message += f"; {result.geometry_error}"
            self._finish(record, "done", message)
        elif result.status == "cancelled" and self._closing:
            self._finish(record, "queued", "interrupted by a server shutdown; resumes when the server starts again")
        elif result.status == "cancelled":
            self._finish(record, "cancelled", f"stopped at step {result.steps}; checkpoint kept")
        else:
            self._finish(record, "failed", result.error or "", (result.error_kind or "Error", result.error or ""))
        log.info("job %s %s", record.job_id, record.state)

    def _finish(self, record: JobRecord, state: str, message: str, error: tuple[str, str] | None = None) -> None:
        """The job's last state, announced only once it no longer runs: a client that continues it on seeing
        ``done`` must not be told that it is still running."""
        with self._condition:
            if self.running == record.job_id:
                self.running = None
        self._set_state(record, state, message, error)

    def _hand_over(self, job_id: str, engine: EditEngine) -> None:
        """Work the ended job was given but did not serve: exports go to the export thread, 2D previews back to the
        preview thread (``None``: no job editor), so that the job's end is announced without waiting for them."""
        exports = []
        while not engine.export_requests.empty():
            exports.append(engine.export_requests.get_nowait())
        self.snapshots.take_over(job_id, exports)
        for work in engine.close_calls():
            work(None)

    def _start_config(self, record: JobRecord) -> StartConfig | None:
        """A chained edit starts from its snapshot (resolved when it was submitted), with its renders as the first
        training images; None for a job that reconstructs its scene."""
        if not record.start_checkpoint:
            return None
        start_from = record.edit_request().start_from
        condition = start_from.condition if start_from is not None else "original"
        return StartConfig(checkpoint=record.start_checkpoint, dataset="renders", condition=condition)

    # ------------------------------------------------------------------ handlers (server loop thread)
    def _edit_start(self, request: Request) -> m.EditStartReply:
        content = request.content
        assert isinstance(content, m.EditStartRequest)
        if not self.store.has_scene(content.scene_id):
            raise ValidationError(f"no uploaded scene {content.scene_id!r} on this server", field="content.scene_id")
        start = self._resolve_start(content)
        config = job_config(content, self.config, start)  # bad engine_overrides are reported now, naming the field
        estimated_s = scene_estimate(config, self.store.cameras(content.scene_id))  # before anything is stored
        record = JobRecord(job_id=new_id("job"), scene_id=content.scene_id, request=self.store.encode_request(content),
                           start_checkpoint=start.checkpoint if start is not None else "")
        self.store.save(record)
        self.records[record.job_id] = record
        self.server.subscribe(request.identity, record.job_id)
        with self._condition:
            self.queue.append(record.job_id)
            position = self._position(record.job_id)
            self._condition.notify_all()
        log.info("job %s queued at position %s", record.job_id, position)
        return m.EditStartReply(job_id=record.job_id, state="queued", queue_position=position,
                                estimated_s=estimated_s)

    def _resolve_start(self, content: m.EditStartRequest) -> StartConfig | None:
        """``start_from``: the snapshot's weights, checked now (same scene, the snapshot exists)."""
        start_from = content.start_from
        if start_from is None:
            return None
        parent = self.record(start_from.job_id, "content.start_from.job_id")
        if parent.scene_id != content.scene_id:
            raise ValidationError(f"job {parent.job_id} edited scene {parent.scene_id}, not {content.scene_id}: a "
                                  "chained edit continues on the same scene", field="content.start_from.job_id")
        store = self.snapshots.store(parent.job_id)
        steps = store.steps()
        step = start_from.step if start_from.step is not None else (steps[-1] if steps else None)
        if step is None or store.read(step) is None:
            raise ValidationError(f"job {parent.job_id} has no snapshot at step {step} (its snapshots: "
                                  f"{', '.join(map(str, store.steps())) or 'none'})", field="content.start_from.step")
        return StartConfig(checkpoint=str(store.model(step)), dataset="renders", condition=start_from.condition)

    def _edit_estimate(self, request: Request) -> m.EditEstimateReply:
        content = request.content
        assert isinstance(content, m.EditEstimateRequest)
        config = job_config(content.request, self.config, field="content.request.engine_overrides")
        return estimate_reply(config, content)

    def _job_continue(self, request: Request) -> m.JobContinueReply:
        """A stopped or finished job runs again from its newest checkpoint, ``extra_steps`` further."""
        from backend.job.jobdir import JobDir, JobDirError

        content = request.content
        record = self.record(content.job_id)
        with self._condition:
            active = record.job_id == self.running or record.job_id in self.queue
        if active or record.state not in ("done", "cancelled", "failed"):
            raise ValidationError(f"job {record.job_id} is {record.state}: only a stopped or finished job continues",
                                  field="content.job_id")
        try:  # its stored request still resolves into settings (a job of an earlier release: renamed ones too)
            job_config(record.edit_request(), self.config, self._start_config(record))
        except ValidationError as error:
            raise ValidationError(f"job {record.job_id} cannot continue: its stored settings do not load "
                                  f"({error.message}); start a new edit", field="content.job_id") from None
        jobs = JobDir(self.store.work_dir(record.job_id))
        if not jobs.list_checkpoints():
            raise ValidationError(f"job {record.job_id} has no checkpoint to continue from (it failed before its "
                                  "first)", field="content.job_id")
        try:
            check_continue(jobs, content.extra_steps)
            total = jobs.extend(content.extra_steps)
        except JobDirError as error:
            raise ValidationError(str(error), field="content.job_id") from None
        self.server.subscribe(request.identity, record.job_id)
        with self._condition:
            self.queue.append(record.job_id)
            self._condition.notify_all()
        self._set_state(record, "queued", f"continues for {content.extra_steps} more editing steps ({total} in all)")
        log.info("job %s continues to %d editing steps", record.job_id, total)
        return m.JobContinueReply(job_id=record.job_id, state="queued", queue_position=self._position(record.job_id),
                                  total_steps=total)

    def _cancel(self, request: Request) -> m.CancelReply:
        if request.content.job_id.startswith("preview-"):  # a 2D preview of this client's (protocol 2.3)
            if not self.previews.cancel(request.content.job_id, request.identity):
                raise ValidationError(f"no 2D preview {request.content.job_id} of yours is waiting or running",
                                      field="content.job_id")
            return m.CancelReply(job_id=request.content.job_id, state="cancelled")
        record = self.record(request.content.job_id)
        with self._condition:
            if record.job_id in self.queue:
                self.queue.remove(record.job_id)
                queued = True
            else:
                queued = False
            if record.job_id == self.running:
                self.stop_running.set()  # the engine stops before its next NeRF step, with a checkpoint
        if queued:
            self._set_state(record, "cancelled", "cancelled before it started")
            self._announce_queue()
        log.info("cancel %s (%s)", record.job_id, record.state)
        return m.CancelReply(job_id=record.job_id, state=record.state)  # type: ignore[arg-type]

    def _snapshot(self, record: JobRecord) -> m.JobSnapshot:
        events = self.events.get(record.job_id)
        return m.JobSnapshot(
            job_id=record.job_id, state=record.state, scene_id=record.scene_id,  # type: ignore[arg-type]
            instruction=str(record.request.get("instruction", "")), queue_position=self._position(record.job_id),
            progress=events.progress if events else None, error_name=record.error_name,
            error_message=record.error_message, created=record.created,
            artifacts=self.index.artifacts(self.store.work_dir(record.job_id)) if record.state == "done" else [],
            last_preview_step=events.last_preview[0].step if events and events.last_preview else None)

    def _job_snapshot(self, request: Request) -> m.JobSnapshotReply:
        content = request.content
        records = [self.record(content.job_id)] if content.job_id else list(self.records.values())
        if content.subscribe:
            self.server.subscribe(request.identity, content.job_id or "*")
        reply = m.JobSnapshotReply(jobs=[self._snapshot(record) for record in records])
        if content.resend_preview:
            for record in records:
                events = self.events.get(record.job_id)
                if events is not None and events.last_preview is not None:
                    self.server.push(request.identity, events.last_preview[0], [events.last_preview[1]])
        return reply

    def _preview_settings(self, request: Request) -> m.PreviewSettingsReply:
        content = request.content
        record = self.record(content.job_id)
        self.preview_settings[record.job_id] = content.preview
        events = self.events.get(record.job_id)
        if events is not None and record.job_id == self.running:
            events.set_preview(content.preview)
        return m.PreviewSettingsReply(job_id=record.job_id)

    def _result_list(self, request: Request) -> m.ResultListReply:
        record = self.record(request.content.job_id)
        return m.ResultListReply(job_id=record.job_id,
                                 artifacts=self.index.artifacts(self.store.work_dir(record.job_id)))

    def _result_fetch(self, request: Request) -> tuple[m.ResultFetchReply, list[bytes]]:
        record = self.record(request.content.job_id)
        return self.index.read(self.store.work_dir(record.job_id), request.content)


def register_job_service(server: Server, args: argparse.Namespace) -> JobService:
    """``python -m backend serve`` extension: the job handlers on ``server`` (see :mod:`backend.server.cli`)."""
    service = JobService(server, JobServiceConfig(jobs_dir=Path(args.jobs_dir), default_editor=args.editor,
                                                  device=args.device, model_dirs=list(args.model_dir),
                                                  max_scene_bytes=int(args.max_scene_mb * 2**20),
                                                  max_snapshot_bytes=int(args.max_snapshots_gb * 2**30)))
    service.start()
    return service
