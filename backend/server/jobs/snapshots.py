"""The snapshot handlers: list a job's NeRF snapshots, export one as geometry on request, delete old ones.

An export of the running job's snapshot is made by that job between two NeRF steps (its own pipeline and device);
any other job's is made by one export thread beside the job queue, so an import never waits for a queued job. Both
report ``nerf_snapshot_export`` events to the job's subscribers and cache the result in the snapshot's folder.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from backend.job.jobdir import JobDir, read_json_object
from backend.job.snapshots import SnapshotRecord, SnapshotStore
from backend.job.types import SnapshotExportTask
from protocol import ValidationError
from protocol import messages as m

from ..core import Request
from .service_view import JobServiceView

log = logging.getLogger(__name__)

SNAPSHOT_REQUESTS = ("nerf_snapshot_list_request", "nerf_snapshot_export_request", "nerf_snapshot_delete_request",
                     "nerf_snapshot_pin_request")
PROGRESS_INTERVAL_S = 0.25


class SnapshotService:
    def __init__(self, jobs: JobServiceView) -> None:
        self.jobs = jobs
        self.exporting: dict[tuple[str, int], threading.Event] = {}
        """(job, step) of exports in progress (queued or running), with their stop events."""
        self._lock = threading.Lock()
        self.rotation_lock = threading.Lock()
        """Held by a job rotating its snapshots away, and here to pin or delete one (never one being rotated)."""
        self._queue: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="in2n-exports", daemon=True)
        self._closing = False

    def start(self) -> None:
        for msg_type in SNAPSHOT_REQUESTS:
            self.jobs.server.register(msg_type, getattr(self, "_" + msg_type.removeprefix("nerf_snapshot_")
                                                          .removesuffix("_request")))
        self._thread.start()
        for job_id in list(self.jobs.records):
            for step in self.store(job_id).interrupted_exports():
                # its client was told "queued" or "running" and waits for a final event: made now, reported then
                log.warning("job %s: the export of snapshot %d was interrupted by a server stop; made again",
                            job_id, step)
                with self._lock:
                    self.exporting.setdefault((job_id, step), threading.Event())
                self._enqueue((job_id, step))

    def close(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            self._closing = True
            for stop in self.exporting.values():
                stop.set()
        self._queue.put(None)
        self._thread.join(timeout_s)

    # ------------------------------------------------------------------ what a client sees
    def store(self, job_id: str) -> SnapshotStore:
        return SnapshotStore(JobDir(self.jobs.store.work_dir(job_id)).snapshots)

    def info(self, job_id: str, record: SnapshotRecord) -> m.NerfSnapshotInfo:
        work = self.jobs.store.work_dir(job_id)
        views, geometry = self.jobs.index.snapshot_artifacts(work, record.step)
        losses = {name: value for name, value in record.losses.items() if isinstance(value, float)}
        return m.NerfSnapshotInfo(step=record.step, editing_step=record.editing_step,
                                  reason=record.reason,  # type: ignore[arg-type]  # one of REASONS
                                  images_edited=record.images_edited, losses=losses, created=record.created,
                                  size_bytes=self.store(job_id).size_bytes(record.step), views=views,
                                  geometry=geometry, pinned=record.pinned)

    def announce(self, job_id: str, record: SnapshotRecord, deleted: bool = False) -> None:
        """Tell the job's subscribers about a new, exported or deleted snapshot (any thread)."""
        self.jobs.server.publish(job_id, m.NerfSnapshotEvent(job_id=job_id, snapshot=self.info(job_id, record),
                                                             deleted=deleted))

    def announce_deleted(self, job_id: str, record: SnapshotRecord) -> None:
        """Tell the job's subscribers a snapshot is gone (deleted on request, or rotated away by its job)."""
        self.jobs.server.publish(job_id, m.NerfSnapshotEvent(
            job_id=job_id, snapshot=m.NerfSnapshotInfo(step=record.step, editing_step=record.editing_step,
                                                       reason=record.reason),  # type: ignore[arg-type]
            deleted=True))

    def in_use(self, job_id: str, model: Path) -> bool:
        """A snapshot another job starts from, or one being exported: its job must not rotate it away."""
        step = int(model.parent.name.removeprefix("step-"))
        with self._lock:
            exporting = (job_id, step) in self.exporting
        return exporting or self.jobs.job_starting_from(model) is not None

    def refusal(self) -> str | None:
        """Why no new scheduled snapshot may be kept (all jobs' snapshots fill the server's space), or None."""
        limit = self.jobs.config.max_snapshot_bytes
        used = sum(self.store(job_id).total_bytes() for job_id in list(self.jobs.records))
        if used < limit:
            return None
        return (f"this server's snapshots take {used / 2**30:.1f} GiB of the {limit / 2**30:.1f} GiB it keeps for "
                "them: delete snapshots you no longer need (or start the server with a larger --max-snapshots-gb)")

    def _snapshot(self, job_id: str, step: int) -> SnapshotRecord:
        record = self.store(job_id).read(step)
        if record is None:
            steps = ", ".join(str(s) for s in self.store(job_id).steps()) or "none"
            raise ValidationError(f"job {job_id} has no snapshot at step {step} (its snapshots: {steps})",
                                  field="content.step")
        return record

    # ------------------------------------------------------------------ handlers (server loop thread)
    def _list(self, request: Request) -> m.NerfSnapshotListReply:
        record = self.jobs.record(request.content.job_id)
        snapshots = [self.info(record.job_id, snapshot) for snapshot in self.store(record.job_id).records()]
        return m.NerfSnapshotListReply(job_id=record.job_id, snapshots=snapshots)

    def _export(self, request: Request) -> m.NerfSnapshotExportReply:
        job_id, step = self.jobs.record(request.content.job_id).job_id, request.content.step
        snapshot = self._snapshot(job_id, step)
        if self.store(job_id).read_export(step) is not None:
            self._done(job_id, snapshot)
            return m.NerfSnapshotExportReply(job_id=job_id, step=step, state="done")
        with self._lock:
            if (job_id, step) in self.exporting:
                return m.NerfSnapshotExportReply(job_id=job_id, step=step, state="running")
            stop = self.exporting[(job_id, step)] = threading.Event()
        self.store(job_id).request_export(step)
        engine = self.jobs.engine_of(job_id)
        if engine is not None:  # made by the running job between two NeRF steps
            engine.request_export(self._task(job_id, step, stop))
            return m.NerfSnapshotExportReply(job_id=job_id, step=step, state="running")
        self._enqueue((job_id, step))
        return m.NerfSnapshotExportReply(job_id=job_id, step=step, state="queued")

    def _delete(self, request: Request) -> m.NerfSnapshotDeleteReply:
        job_id, step = self.jobs.record(request.content.job_id).job_id, request.content.step
        snapshot = self._snapshot(job_id, step)
        with self._lock:
            if (job_id, step) in self.exporting:
                raise ValidationError(f"snapshot {step} of job {job_id} is being exported; delete it afterwards",
                                      field="content.step")
        user = self.jobs.job_starting_from(self.store(job_id).model(step))
        if user is not None:
            raise ValidationError(f"job {user} starts from snapshot {step} of job {job_id}; delete it once that job "
                                  "has started", field="content.step")
        with self.rotation_lock:
            freed = self.store(job_id).delete(step)
        log.info("job %s: snapshot %d deleted (%.1f MiB)", job_id, step, freed / 2**20)
        self.announce_deleted(job_id, snapshot)
        return m.NerfSnapshotDeleteReply(job_id=job_id, step=step, freed_bytes=freed)

    def _pin(self, request: Request) -> m.NerfSnapshotPinReply:
        content = request.content
        job_id, step, pinned = self.jobs.record(content.job_id).job_id, content.step, content.pinned
        with self.rotation_lock:  # not while its job rotates snapshots away
            snapshot = self._snapshot(job_id, step)
            snapshot.pinned = pinned
            self.store(job_id).write_record(snapshot)
        log.info("job %s: snapshot %d %s", job_id, step, "pinned" if pinned else "unpinned")
        self.announce(job_id, snapshot)
        return m.NerfSnapshotPinReply(job_id=job_id, step=step, pinned=pinned)

    # ------------------------------------------------------------------ exporting
    def _task(self, job_id: str, step: int, stop: threading.Event) -> SnapshotExportTask:
        started = time.monotonic()
        last = [0.0]

        def progress(export: Any) -> None:  # backend.export.ExportProgress
            now = time.monotonic()
            if export.finished or now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                self.jobs.server.publish(job_id, m.NerfSnapshotExportEvent(
                    job_id=job_id, step=step, state="running", fraction=export.fraction,
                    eta_s=export.eta_s(now - started), message=f"{export.points_found} points"))

        def done(result: Any, error: BaseException | None) -> None:
            # the export counts as running until its final event is out: a delete is refused until then (deleting
            # a snapshot as its export finished made this raise, and killed the export thread)
            try:
                snapshot = self.store(job_id).read(step) if error is None else None
                if error is None and snapshot is None:
                    error = FileNotFoundError(f"snapshot {step} was deleted as its export finished")
                if snapshot is not None:
                    self._done(job_id, snapshot)
                    return
                cancelled = stop.is_set()
                log.warning("job %s: export of snapshot %d %s: %s", job_id, step,
                            "cancelled" if cancelled else "failed", error)
                self.jobs.server.publish(job_id, m.NerfSnapshotExportEvent(
                    job_id=job_id, step=step, state="cancelled" if cancelled else "failed",
                    message=f"{type(error).__name__}: {error}"[:4000]))
            finally:
                self.store(job_id).export_reported(step)
                with self._lock:
                    self.exporting.pop((job_id, step), None)

        return SnapshotExportTask(step, stop, progress, done)

    def _done(self, job_id: str, snapshot: SnapshotRecord) -> None:
        info = self.info(job_id, snapshot)
        self.jobs.server.publish(job_id, m.NerfSnapshotExportEvent(job_id=job_id, step=snapshot.step, state="done",
                                                                   fraction=1.0, artifacts=info.geometry))
        self.jobs.server.publish(job_id, m.NerfSnapshotEvent(job_id=job_id, snapshot=info))

    def take_over(self, job_id: str, tasks: list[SnapshotExportTask]) -> None:
        """Exports a job was asked for but ended before serving: made by the export thread instead."""
        for task in tasks:
            self._enqueue((job_id, task.step))

    def _enqueue(self, item: tuple[str, int]) -> None:
        """Queue an export for the export thread, replacing the thread (logged) if it has died."""
        with self._lock:
            if self._thread.ident is not None and not self._thread.is_alive() and not self._closing:
                log.error("the export thread had died; a new one takes the queued exports")
                self._thread = threading.Thread(target=self._work, name="in2n-exports", daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._export_one(*item)
            except Exception:  # a bug in reporting must not leave every later export queued forever
                log.exception("export of snapshot %s of job %s failed unexpectedly", item[1], item[0])
                self.store(item[0]).export_reported(item[1])
                with self._lock:
                    self.exporting.pop(item, None)

    def _export_one(self, job_id: str, step: int) -> None:
        # torch and nerfstudio are imported on the first export, not when the thread starts: an idle server
        # stopped by SIGTERM waited for that import (17 s on a busy CPU)
        from backend.editing.memory import resolve_device
        from backend.job.snapshot_export import export_stored_snapshot

        with self._lock:
            stop = self.exporting.setdefault((job_id, step), threading.Event())
        task = self._task(job_id, step, stop)
        work = self.jobs.store.work_dir(job_id)
        try:
            device = resolve_device(str(read_json_object(Path(work) / "config.json").get("device", "auto")))
            result = export_stored_snapshot(work, step, device, stop, task.on_progress)
        except Exception as error:  # reported to the client; the thread serves the next export
            task.on_done(None, error)
        else:
            task.on_done(result, None)
