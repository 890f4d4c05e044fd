"""The real backend server core (``backend.server``: ROUTER loop, signing, reply cache, subscriptions) with the
basic handlers and a SCRIPTED job runner in place of the NeRF engine, so add-on tests exercise every message the
add-on sends and receives in seconds and without torch.

The scripted job goes through the real job states and phases, pushes progress and preview events (the preview is
the first uploaded image scaled by the step, so a test can predict its pixels), then serves result files given by
the test. ``gate`` holds the job before export (tests cancel or reconnect at a known point).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.server.basic import register_basic_handlers
from backend.server.config import ServerConfig
from backend.server.core import Request, Server
from protocol import SceneAssembler, ValidationError
from protocol import messages as m
from tests.helpers.png import read_png_bytes


def ply_bytes(points: np.ndarray, colors: np.ndarray) -> bytes:
    """Binary little-endian PLY of ``N 3`` float32 points with uchar RGB (the engine's point cloud format)."""
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    return header.encode("ascii") + vertex.tobytes()


def preview_for(image: np.ndarray, step: int, total: int) -> np.ndarray:
    """What the scripted job shows at ``step``: the first training image, darkened towards the start."""
    return (image.astype(np.float32) * (0.25 + 0.75 * step / total)).astype(np.uint8)


@dataclass
class ScriptedJob:
    job_id: str
    scene_id: str
    request: m.EditStartRequest
    state: str = "queued"
    progress: m.Progress | None = None
    artifacts: list[m.ArtifactInfo] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    last_preview: tuple[m.JobPreviewEvent, bytes] | None = None


class ScriptedBackend:
    def __init__(self, results: dict[str, tuple[Any, ...]], *, steps: int = 12, step_s: float = 0.01,
                 key: str | None = None, heartbeat_s: float = 0.3) -> None:
        self.server = Server(ServerConfig(key=key, probe_device=False, heartbeat_interval_s=heartbeat_s))
        register_basic_handlers(self.server)
        self.results = results
        """Artifact name -> (kind, bytes[, metadata]) every job produces."""
        self.preview_requests: list[m.PreviewSettingsRequest] = []
        self.steps, self.step_s = steps, step_s
        self.gate = threading.Event()
        self.gate.set()
        self.uploads: dict[str, SceneAssembler] = {}
        self.scenes: dict[str, tuple[m.SceneBeginRequest, list[np.ndarray]]] = {}
        self.aux: dict[str, list[np.ndarray]] = {}
        """Scene id -> its auxiliary images, in ``begin.aux_images`` order."""
        self.jobs: dict[str, ScriptedJob] = {}
        self._ids = itertools.count(1)
        for msg_type, handler in [
            ("scene_begin_request", self._scene_begin), ("scene_chunk_request", self._scene_chunk),
            ("scene_end_request", self._scene_end), ("edit_start_request", self._edit_start),
            ("job_snapshot_request", self._snapshot), ("cancel_request", self._cancel),
            ("result_list_request", self._result_list), ("result_fetch_request", self._result_fetch),
            ("preview_settings_request", self._preview_settings),
        ]:
            self.server.register(msg_type, handler)
        self.info = self.server.bind()
        self.server.start()

    def stop(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        self.gate.set()
        self.server.stop()
        self.server.stopped.wait(5)

    # ------------------------------------------------------------------ scene upload
    def _scene_begin(self, request: Request) -> m.SceneBeginReply:
        begin = request.content
        self.uploads[begin.upload_id] = SceneAssembler(begin)
        return m.SceneBeginReply(upload_id=begin.upload_id, expected_bytes=begin.total_bytes, max_chunk_bytes=1 << 20)

    def _scene_chunk(self, request: Request) -> m.SceneChunkReply:
        chunk = request.content
        assembler = self.uploads[chunk.upload_id]
        received = assembler.add_chunk(chunk, request.message.buffers)
        return m.SceneChunkReply(upload_id=chunk.upload_id, received_bytes=received, expected_bytes=assembler.expected_bytes)

    def _scene_end(self, request: Request) -> m.SceneEndReply:
        end = request.content
        assembler = self.uploads.pop(end.upload_id)
        assembler.finish(end)
        begin = assembler.begin
        images = [read_png_bytes(bytes(buf)) if info.encoding == "png" else
                  np.frombuffer(bytes(buf), dtype=info.dtype).reshape(info.shape)
                  for buf, info in zip(assembler.images, begin.all_images)]
        scene_id = f"scene-{next(self._ids)}"
        self.scenes[scene_id] = (begin, images[:len(begin.images)])
        self.aux[scene_id] = images[len(begin.images):]
        return m.SceneEndReply(scene_id=scene_id, image_count=len(images), total_bytes=begin.total_bytes)

    # ------------------------------------------------------------------ jobs
    def _snapshot_of(self, job: ScriptedJob) -> m.JobSnapshot:
        return m.JobSnapshot(job_id=job.job_id, state=job.state, scene_id=job.scene_id, instruction=job.request.instruction,
                             progress=job.progress, artifacts=list(job.artifacts),
                             last_preview_step=job.last_preview[0].step if job.last_preview else None)

    def _edit_start(self, request: Request) -> m.EditStartReply:
        content = request.content
        if content.scene_id not in self.scenes:
            raise ValidationError(f"unknown scene {content.scene_id!r}", field="content.scene_id")
        job = ScriptedJob(f"job-{next(self._ids)}", content.scene_id, content)
        self.jobs[job.job_id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return m.EditStartReply(job_id=job.job_id, state="queued", queue_position=0)

    def _snapshot(self, request: Request) -> m.JobSnapshotReply:
        content = request.content
        jobs = [j for j in self.jobs.values() if content.job_id in (None, j.job_id)]
        if content.subscribe:
            self.server.subscribe(request.identity, content.job_id or "*")
        if content.resend_preview:
            for job in jobs:
                if job.last_preview is not None:
                    self.server.push(request.identity, job.last_preview[0], [job.last_preview[1]])
        return m.JobSnapshotReply(jobs=[self._snapshot_of(j) for j in jobs])

    def _cancel(self, request: Request) -> m.CancelReply:
        job = self.jobs[request.content.job_id]
        job.cancel.set()
        return m.CancelReply(job_id=job.job_id, state=job.state if job.state in m.FINAL_STATES else "cancelled")

    def _set_state(self, job: ScriptedJob, state: str) -> None:
        job.state = state
        self.server.publish(job.job_id, m.JobStateEvent(job_id=job.job_id, state=state, queue_position=None))

    def _run(self, job: ScriptedJob) -> None:
        begin, images = self.scenes[job.scene_id]
        self._set_state(job, "preparing")
        phases = ["reconstructing", "editing"]
        for index, phase in enumerate(phases):
            self._set_state(job, phase)
            for step in range(1, self.steps + 1):
                if job.cancel.is_set():
                    self._set_state(job, "cancelled")
                    return
                fraction = (index + step / self.steps) / (len(phases) + 1)
                job.progress = m.Progress(phase=phase, step=step, total_steps=self.steps, fraction=fraction,
                                          eta_s=(self.steps - step) * self.step_s, elapsed_s=step * self.step_s)
                self.server.publish(job.job_id, m.JobProgressEvent(job_id=job.job_id, progress=job.progress))
                if phase == "editing" and step % 4 == 0:
                    pixels = np.ascontiguousarray(preview_for(images[0], step, self.steps))
                    event = m.JobPreviewEvent(job_id=job.job_id, step=step,
                                              image=m.ImageInfo(dtype="uint8", shape=list(pixels.shape)), camera_index=0)
                    job.last_preview = (event, pixels.tobytes())
                    self.server.publish(job.job_id, event, [pixels.tobytes()])
                time.sleep(self.step_s)
        while not self.gate.wait(0.02):
            if job.cancel.is_set():
                self._set_state(job, "cancelled")
                return
        self._set_state(job, "exporting")
        job.artifacts = [m.ArtifactInfo(name=name, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                        metadata=dict(rest[0]) if rest else {})
                         for name, (kind, data, *rest) in self.results.items()]
        self.server.publish(job.job_id, m.JobResultEvent(job_id=job.job_id, artifacts=job.artifacts))
        self._set_state(job, "done")

    def _preview_settings(self, request: Request) -> m.PreviewSettingsReply:
        self.preview_requests.append(request.content)
        return m.PreviewSettingsReply(job_id=request.content.job_id)

    # ------------------------------------------------------------------ results
    def _result_list(self, request: Request) -> m.ResultListReply:
        job = self.jobs[request.content.job_id]
        return m.ResultListReply(job_id=job.job_id, artifacts=list(job.artifacts))

    def _result_fetch(self, request: Request) -> tuple[m.ResultFetchReply, list[bytes]]:
        content = request.content
        data = self.results[content.name][1]
        piece = data[content.offset:content.offset + content.length]
        end = content.offset + len(piece)
        return (m.ResultFetchReply(job_id=content.job_id, name=content.name, offset=content.offset, length=len(piece),
                                   size=len(data), sha256=hashlib.sha256(data).hexdigest(), eof=end >= len(data)),
                [piece])
