"""A real ``python -m backend serve`` process with job handlers, and a client that follows one job's events."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import protocol
from backend.config import tiny_nerf_config
from protocol import RawImage
from protocol import messages as m
from tests.helpers.scenes import TinyScene

REPO_ROOT = Path(__file__).resolve().parents[3]

#: tiny nerfacto on the CPU (backend.config.tiny_nerf_config, without its step count and
#: seed, which the request sets) and the tiny random editor, as
#: engine_overrides
TINY_OVERRIDES: dict[str, Any] = {
    "device": "cpu",
    "editor": {"source": "tiny"},
    "nerf": {name: list(value) if isinstance(value, tuple) else value
             for name, value in dataclasses.asdict(tiny_nerf_config()).items() if name not in ("reconstruction_steps", "seed")},
    "update": {"ddim_steps": 4},
    "output": {"checkpoint_every": 20, "snapshot_every": 0, "export_num_points": 3000, "poisson_depth": 6},
}


@dataclass
class BackendProcess:
    process: subprocess.Popen[bytes]
    connection_file: Path
    jobs_dir: Path
    log_path: Path

    def client(self, timeout_s: float = 30.0, **kwargs: Any) -> protocol.Client:
        return protocol.Client(protocol.read_connection_file(self.connection_file), timeout_s=timeout_s, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_backend(folder: Path, *extra: str, torch_home: Path | None = None) -> BackendProcess:
    """Start the server on a server-chosen port; returns once its connection file exists."""
    folder.mkdir(parents=True, exist_ok=True)
    connection = folder / "connection.json"
    connection.unlink(missing_ok=True)
    log_path = folder / f"stdout-{time.monotonic_ns()}.log"
    env = {**os.environ, **({"TORCH_HOME": str(torch_home)} if torch_home else {})}
    # One intra-op thread: test servers share 2 cores with other test processes, and OpenMP's spin-waiting threads
    # make an oversubscribed CPU many times slower (measured: 84 tiny steps 78 s with 1 thread, > 3 min with 2).
    env.setdefault("OMP_NUM_THREADS", "1")
    process = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--connection-file", str(connection),
                                "--jobs-dir", str(folder / "jobs"), "--no-device-probe", "--heartbeat", "1", *extra],
                               cwd=REPO_ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not connection.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"backend did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    return BackendProcess(process, connection, folder / "jobs", log_path)


def upload(client: protocol.Client, scene: TinyScene) -> str:
    cameras = [m.Camera(fl_x=scene.focal, fl_y=scene.focal, cx=scene.width / 2, cy=scene.height / 2, w=scene.width,
                        h=scene.height, transform_matrix=c2w.tolist(), name=f"cam{i}")
               for i, c2w in enumerate(scene.c2w)]
    images = [RawImage.from_array(np.ascontiguousarray(image)) for image in scene.images]
    return client.upload_scene(cameras, images, scene_name="tiny").scene_id


def edit_request(scene_id: str, *, reconstruction_steps: int = 300, total_steps: int = 20, every: int = 5,
                 preview_hz: float = 20.0, outputs: tuple[str, ...] = ("mesh", "pointcloud", "images"),
                 snapshots: m.SnapshotSettings | None = None, start_from: m.StartFrom | None = None,
                 instruction: str = "make it blue", **overrides: Any) -> m.EditStartRequest:
    engine = {**TINY_OVERRIDES, **overrides}
    if snapshots is not None:  # the request's own snapshot settings, not the tiny overrides'
        engine["output"] = {k: v for k, v in engine["output"].items() if k != "snapshot_every"}
    return m.EditStartRequest(
        scene_id=scene_id, instruction=instruction,
        schedule=m.Schedule(reconstruction_steps=reconstruction_steps, total_steps=total_steps,
                            edit_every_n_steps=every, ddim_steps=4),
        memory_mode="in2n-tiny", preview=m.PreviewSettings(enabled=True, max_rate_hz=preview_hz, max_side=32),
        outputs=list(outputs), snapshots=snapshots or m.SnapshotSettings(), start_from=start_from,
        engine_overrides=engine)


@dataclass
class JobWatch:
    """Every event of one job, as a client saw them."""

    job_id: str
    states: list[str] = field(default_factory=list)
    progress: list[m.Progress] = field(default_factory=list)
    previews: list[tuple[m.JobPreviewEvent, bytes]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    results: list[m.JobResultEvent] = field(default_factory=list)
    state_times: dict[str, float] = field(default_factory=dict)
    snapshots: list[m.NerfSnapshotEvent] = field(default_factory=list)
    exports: list[m.NerfSnapshotExportEvent] = field(default_factory=list)

    def take(self, events: list[protocol.Received]) -> None:
        for received in events:
            content = received.content
            if getattr(content, "job_id", None) != self.job_id:
                continue
            if isinstance(content, m.JobStateEvent):
                if not self.states or self.states[-1] != content.state:
                    self.states.append(content.state)
                    self.state_times.setdefault(content.state, time.monotonic())
            elif isinstance(content, m.JobProgressEvent):
                self.progress.append(content.progress)
            elif isinstance(content, m.JobPreviewEvent):
                self.previews.append((content, bytes(received.message.buffers[0])))
            elif isinstance(content, m.JobLogEvent):
                self.logs.append(content.text)
            elif isinstance(content, m.JobResultEvent):
                self.results.append(content)
            elif isinstance(content, m.NerfSnapshotEvent):
                self.snapshots.append(content)
            elif isinstance(content, m.NerfSnapshotExportEvent):
                self.exports.append(content)

    def follow(self, client: protocol.Client, until: Any, timeout_s: float = 1800.0, *,
               stop_when_final: bool = True) -> None:
        """Collect events until ``until(self)`` holds (or the job reaches a final state, unless
        ``stop_when_final`` is off: e.g. to wait for an export of an ended job's snapshot)."""
        deadline = time.monotonic() + timeout_s
        while not until(self):
            if stop_when_final and self.states and self.states[-1] in m.FINAL_STATES:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {self.job_id}: states so far {self.states}")
            self.take(client.poll_events(0.2))


def send_twice(info: protocol.ConnectionInfo, content: Any) -> list[Any]:
    """Send one request twice with the same msg_id, as a Lazy-Pirate retry does (fresh date, fresh signature);
    returns the replies (contents) that arrive within 5 s."""
    import zmq

    from protocol.wire import utc_now

    session = protocol.Session(info.key_bytes)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, session.routing_id)
    sock.connect(info.url)
    try:
        message = m.build(session, content)
        first = session.serialize(message)
        time.sleep(0.002)
        message.header["date"] = utc_now()
        sock.send_multipart(first)
        sock.send_multipart(session.serialize(message))
        replies: list[Any] = []  # events (job_state, heartbeats) also arrive: this socket started a job
        deadline = time.monotonic() + 5.0
        while len(replies) < 2 and sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            received = session.deserialize(sock.recv_multipart())
            if m.spec_for(received.msg_type).kind == "reply":
                replies.append(m.parse(received))
        return replies
    finally:
        sock.close()


def slow_reader(info: protocol.ConnectionInfo, session: protocol.Session) -> Any:  # -> zmq.Socket
    """A DEALER of ``session`` that reads (almost) nothing: its own side takes one message and 64 KiB of TCP, so
    what the server sends it waits on the server."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 64 * 1024)
    sock.setsockopt(zmq.ROUTING_ID, session.routing_id)
    sock.connect(info.url)
    return sock
