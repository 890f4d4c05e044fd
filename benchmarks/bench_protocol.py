"""Protocol speed on loopback: image-buffer transfer (MB/s) and ping round-trip latency.

    <env python> -m benchmarks.bench_protocol [--megabytes 512] [--chunk-mb 16] [--pings 1000]

The server runs in a separate process (as in real use) with in-memory upload handlers on the real server core;
the client uploads random uint8 RGBA 1080p frames through ``Client.upload_scene``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol import Client, RawImage, SceneAssembler, read_connection_file, write_connection_file  # noqa: E402
from protocol import messages as m  # noqa: E402


def serve(connection_file: str, chunk_bytes: int) -> None:
    """Server process: core + basic handlers + in-memory scene upload (stored scenes are dropped at once)."""
    from backend.server import Request, Server, ServerConfig, register_basic_handlers

    server = Server(ServerConfig(probe_device=False, max_chunk_bytes=chunk_bytes))
    register_basic_handlers(server)
    uploads: dict[str, SceneAssembler] = {}

    def begin(request: Request) -> m.SceneBeginReply:
        uploads[request.content.upload_id] = SceneAssembler(request.content)
        return m.SceneBeginReply(upload_id=request.content.upload_id, expected_bytes=request.content.total_bytes,
                                 max_chunk_bytes=chunk_bytes)

    def chunk(request: Request) -> m.SceneChunkReply:
        assembler = uploads[request.content.upload_id]
        done = assembler.add_chunk(request.content, request.message.buffers)
        return m.SceneChunkReply(upload_id=request.content.upload_id, received_bytes=done,
                                 expected_bytes=assembler.expected_bytes)

    def end(request: Request) -> m.SceneEndReply:
        assembler = uploads.pop(request.content.upload_id)
        assembler.finish(request.content)
        return m.SceneEndReply(scene_id=request.content.upload_id, image_count=len(assembler.images),
                               total_bytes=assembler.expected_bytes)

    for msg_type, handler in (("scene_begin_request", begin), ("scene_chunk_request", chunk), ("scene_end_request", end)):
        server.register(msg_type, handler)
    write_connection_file(connection_file, server.bind())
    server.serve_forever()


def hmac_mbps(megabytes: int = 256) -> float:
    data = bytes(megabytes << 20)
    start = time.perf_counter()
    hmac.new(b"k" * 32, data, hashlib.sha256).digest()
    return megabytes * 1.048576 / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=512, help="scene size to upload")
    parser.add_argument("--chunk-mb", type=int, default=16)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="uploads to time (median and best are reported)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chunk_bytes = args.chunk_mb << 20
    if args.serve:
        serve(args.serve, chunk_bytes)
        return 0

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        conn = Path(tmp) / "conn.json"
        server = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_protocol", "--serve", str(conn),
                                   "--chunk-mb", str(args.chunk_mb)], cwd=ROOT)
        try:
            while not conn.exists():
                if server.poll() is not None:
                    raise SystemExit("benchmark server failed to start")
                time.sleep(0.05)
            info = read_connection_file(conn)
            frame = 1080 * 1920 * 4
            count = max(1, (args.megabytes << 20) // frame)
            rng = np.random.default_rng(0)
            arrays = [rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8) for _ in range(count)]
            cameras = [m.Camera(fl_x=1500.0, fl_y=1500.0, cx=960.0, cy=540.0, w=1920, h=1080,
                                transform_matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])] * count
            images = [RawImage.from_array(a) for a in arrays]
            total = sum(a.nbytes for a in arrays)
            transfer, upload = [], []
            with Client(info, timeout_s=60) as client:
                client.ping()
                for _ in range(args.repeat):
                    marks: list[float] = []
                    start = time.perf_counter()
                    client.upload_scene(cameras, images, chunk_bytes=chunk_bytes,
                                        progress=lambda done, _: marks.append(time.perf_counter()))
                    upload.append(total / 1e6 / (time.perf_counter() - start))
                    transfer.append(total / 1e6 / (marks[-1] - start))  # begin + chunks, before the SHA-256 check
                rtts = []
                for _ in range(args.pings):
                    rtts.append(client.ping() * 1000)
                client.shutdown("benchmark done")
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.terminate()
    rtts.sort()
    result: dict[str, Any] = {
        "benchmark": "protocol",
        "transfer_MBps": round(statistics.median(transfer), 1),
        "transfer_MBps_best": round(max(transfer), 1),
        "upload_with_checksum_MBps": round(statistics.median(upload), 1),
        "repeats": args.repeat,
        "bytes": total,
        "chunk_bytes": chunk_bytes,
        "ping_rtt_ms_p50": round(statistics.median(rtts), 3),
        "ping_rtt_ms_p99": round(rtts[int(len(rtts) * 0.99) - 1], 3),
        "pings": len(rtts),
        "hmac_sha256_MBps": round(hmac_mbps(), 1),
        "goal_transfer_MBps": 500,
        "device": f"{platform.processor() or platform.machine()} / loopback tcp, python {platform.python_version()}",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
