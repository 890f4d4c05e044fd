"""What a flooding or slow client can make a real server spend (issue 22): 2D previews per client and in all, the
outgoing-queue bound and the server's peak RSS under a preview flood and a slow reader, cancel latency of a job with
previews queued, and stop time during a long preview.

    <backend env python> -m benchmarks.bench_server_limits [--slow-reader-s 60]

Runs real ``python -m backend serve`` processes (tiny editor and nerfacto on the CPU) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import protocol  # noqa: E402
from protocol import messages as m  # noqa: E402
from tests.backend.server.jobs_helpers import (  # noqa: E402
    BackendProcess,
    JobWatch,
    edit_request,
    slow_reader,
    start_backend,
    upload,
)
from tests.helpers.scenes import make_tiny_scene  # noqa: E402

TINY = {"editor": {"source": "tiny"}, "device": "cpu"}


def memory_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


def preview(side: int, *, grid: int = 3, ddim_steps: int = 1000) -> m.InstructionPreviewRequest:
    return m.InstructionPreviewRequest(
        instruction="make it blue", image=m.ImageInfo("uint8", [side, side, 3]),
        guidance_scales=[5.0 + i for i in range(grid)], image_guidance_scales=[1.2 + 0.1 * i for i in range(grid)],
        ddim_steps=ddim_steps, memory_mode="in2n-tiny", engine_overrides=TINY)


def flood(backend: BackendProcess, requests: int, clients: int) -> dict[str, object]:
    """One client asks for ``requests`` long previews as fast as it can; then ``clients`` clients at once."""
    view = np.zeros((32, 32, 3), np.uint8)
    accepted: list[tuple[protocol.Client, str]] = []
    refused = 0
    started = time.perf_counter()
    with backend.client() as one:
        for _ in range(requests):
            try:
                accepted.append((one, one.request(preview(32), [view.tobytes()]).preview_id))
            except protocol.ValidationError:
                refused += 1
        seconds = time.perf_counter() - started
        per_client = len(accepted)
        for client, preview_id in accepted:
            client.cancel(preview_id)
    time.sleep(1.0)
    many = [backend.client() for _ in range(clients)]
    in_all: list[tuple[protocol.Client, str]] = []
    for client in many:
        for _ in range(5):
            try:
                in_all.append((client, client.request(preview(32), [view.tobytes()]).preview_id))
            except protocol.ValidationError:
                pass
    for client, preview_id in in_all:
        client.cancel(preview_id)
    for client in many:
        client.close()
    return {"requests": requests, "accepted_one_client": per_client, "refused_one_client": refused,
            "seconds": round(seconds, 3), "clients": clients, "accepted_all_clients": len(in_all),
            **memory_mb(backend.process.pid)}


def measure_slow_reader(backend: BackendProcess, seconds: float, side: int) -> dict[str, object]:
    """A client that asks for 3x3 previews of a ``side`` px view, one every 0.2 s, and reads nothing."""
    info = protocol.read_connection_file(backend.connection_file)
    session = protocol.Session(info.key_bytes)
    sock = slow_reader(info, session)
    view = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8).tobytes()
    before = memory_mb(backend.process.pid)
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.send_multipart(session.serialize(m.build(session, preview(side, ddim_steps=1), buffers=[view])))
        sent += 1
        time.sleep(0.2)
    time.sleep(5.0)
    sock.close(0)
    log = backend.log()
    return {"seconds": seconds, "requests": sent, "request_bytes": sent * len(view),
            "cells_made": log.count("9 cells of"), "cut_off": "reads nothing" in log,
            "rss_before_mb": before["rss_mb"], **memory_mb(backend.process.pid)}


def unread_events(megabytes: int) -> dict[str, object]:
    """An in-process server core over real TCP publishes ``megabytes`` of 1 MiB job previews (and a progress event
    and a state every MiB) to a subscriber that reads nothing: what waits for it, and this process's peak RSS."""
    from backend.server import ALL, Request, Server, ServerConfig, register_basic_handlers

    server = Server(ServerConfig(probe_device=False))
    register_basic_handlers(server, None)

    def snapshot(request: Request) -> m.JobSnapshotReply:
        server.subscribe(request.identity, ALL)
        return m.JobSnapshotReply(jobs=[])

    server.register("job_snapshot_request", snapshot)
    server.start()
    session = protocol.Session(server.info.key_bytes)
    sock = slow_reader(server.info, session)
    sock.send_multipart(session.serialize(m.build(session, m.JobSnapshotRequest(job_id=None))))
    sock.poll(5000)
    sock.recv_multipart()
    import os

    before = memory_mb(os.getpid())
    for step in range(megabytes):
        pixels = np.full(512 * 512 * 4, step % 251 + 1, np.uint8).tobytes()  # its own memory, touched
        server.publish("job", m.JobPreviewEvent(job_id="job", step=step, image=m.ImageInfo("uint8", [512, 512, 4])),
                       [pixels])
        server.publish("job", m.JobProgressEvent(job_id="job", progress=m.Progress(
            phase="editing", step=step, total_steps=megabytes)))
        server.publish("job", m.JobStateEvent(job_id="job", state="editing", message=f"{step}"))
    waiting = server.outgoing_bytes(timeout_s=120).get(session.routing_id, 0)  # after every publish was handled
    after = memory_mb(os.getpid())
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what is still alive, not what glibc kept of the burst's freed buffers
    live = memory_mb(os.getpid())
    sock.close(0)
    server.stop()
    return {"published_mb": megabytes, "bound_mb": server.config.max_outgoing_bytes / 2**20,
            "waiting_in_outbox_mb": round(waiting / 2**20, 1),
            "live_growth_mb": round(live["rss_mb"] - before["rss_mb"], 1),
            "rss_growth_before_trim_mb": round(after["rss_mb"] - before["rss_mb"], 1),
            "peak_rss_growth_mb": round(after["peak_rss_mb"] - before["peak_rss_mb"], 1)}


def cancel_with_previews(backend: BackendProcess, folder: Path, clients: int) -> dict[str, object]:
    scene = make_tiny_scene(folder / "scene", num_views=10, size=32)
    view = np.ascontiguousarray(scene.images[0][..., :3])
    many = [backend.client() for _ in range(clients)]
    client = many[0]
    watch = JobWatch(client.start_edit(edit_request(upload(client, scene), reconstruction_steps=20,
                                                    total_steps=10**6, every=4, outputs=("images",))).job_id)
    watch.follow(client, lambda w: sum(p.phase == "editing" for p in w.progress) >= 3)
    queued = [c.request(preview(32), [view.tobytes()]).preview_id for c in many for _ in range(3)]
    time.sleep(2.0)  # handed to the job, the first one being made between its steps
    asked = time.monotonic()
    client.cancel(watch.job_id)
    watch.follow(client, lambda w: "cancelled" in w.states, timeout_s=300)
    latency = watch.state_times["cancelled"] - asked
    for c in many:
        c.close()
    return {"previews_queued": len(queued), "cancel_latency_s": round(latency, 3)}


def stop_during_long_preview(folder: Path) -> dict[str, object]:
    backend = start_backend(folder)
    view = np.zeros((32, 32, 3), np.uint8)
    with backend.client() as client:
        preview_id = client.request(preview(32, grid=5), [view.tobytes()]).preview_id
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
                isinstance(e.content, m.InstructionPreviewEvent) and e.content.preview_id == preview_id
                for e in client.poll_events(0.2)):
            pass  # until its first cell: the preview runs
    asked = time.monotonic()
    backend.process.terminate()
    backend.process.wait(600)
    return {"grid": "5x5", "ddim_steps": 1000, "stop_s": round(time.monotonic() - asked, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", type=int, default=300, help="previews one client asks for at once")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--slow-reader-s", type=float, default=60.0)
    parser.add_argument("--unread-mb", type=int, default=1024, help="MiB of events sent to a client reading none")
    parser.add_argument("--slow-reader-side", type=int, default=256, help="px of the slow reader's views")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"benchmark": "server_limits",
                                 "device": f"cpu ({platform.processor() or platform.machine()})"}
    result["unread_events"] = unread_events(args.unread_mb)
    with tempfile.TemporaryDirectory() as folder:
        backend = start_backend(Path(folder) / "server")
        try:
            with backend.client() as client:
                hello = client.hello()
            result["limits"] = {"max_previews_per_client": hello.limits.max_previews_per_client,
                                "max_previews": hello.limits.max_previews,
                                "max_outgoing_mb": (hello.limits.max_outgoing_bytes or 0) / 2**20}
            result["idle"] = memory_mb(backend.process.pid)
            result["flood"] = flood(backend, args.flood, args.clients)
            result["slow_reader"] = measure_slow_reader(backend, args.slow_reader_s, args.slow_reader_side)
            result["cancel"] = cancel_with_previews(backend, Path(folder), 4)
        finally:
            backend.stop()
        result["stop"] = stop_during_long_preview(Path(folder) / "stop")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
