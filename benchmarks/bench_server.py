"""The job server end to end on loopback: upload throughput into the job store, cancel latency, preview overhead.

    <backend env python> -m benchmarks.bench_server [--upload-mb 100] [--cancels 3] [--steps 300]

Runs a real ``python -m backend serve`` process (tiny nerfacto on the CPU, tiny editor) and prints one JSON object:
- ``upload``: MB/s until the last chunk is acknowledged, and until the scene is stored (SHA-256 checked, PNGs written);
- ``cancel_latency_s``: cancel request sent -> ``job_state cancelled`` received, for a job in its editing phase;
- ``preview``: NeRF steps/s of the same job with previews off and with previews at ``--preview-hz``, and the slowdown
  (goal < 5 %; the server lowers the preview rate when rendering would take more than its budget of training time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol import RawImage  # noqa: E402
from protocol import messages as m  # noqa: E402
from tests.backend.server.jobs_helpers import JobWatch, edit_request, start_backend, upload  # noqa: E402
from tests.helpers.scenes import make_tiny_scene  # noqa: E402


def measure_upload(backend, megabytes: int) -> dict[str, float]:
    side = 1024
    count = max(1, (megabytes << 20) // (side * side * 4))
    rng = np.random.default_rng(0)
    images = [RawImage.from_array(rng.integers(0, 256, (side, side, 4), dtype=np.uint8)) for _ in range(count)]
    cameras = [m.Camera(fl_x=900.0, fl_y=900.0, cx=512.0, cy=512.0, w=side, h=side,
                        transform_matrix=np.eye(4).tolist())] * count
    total = sum(image.data.nbytes for image in images)
    marks: list[float] = []
    with backend.client(timeout_s=300) as client:
        started = time.perf_counter()
        client.upload_scene(cameras, images, progress=lambda done, _: marks.append(time.perf_counter()))
        stored = time.perf_counter()
    return {"bytes": total, "transfer_MBps": round(total / 1e6 / (marks[-1] - started), 1),
            "stored_MBps": round(total / 1e6 / (stored - started), 1)}


def steps_per_second(watch: JobWatch) -> float:
    edit = [p for p in watch.progress if p.phase == "editing"]
    first, last = edit[len(edit) // 5], edit[-1]  # skip the warm-up
    return (last.step - first.step) / max(last.elapsed_s - first.elapsed_s, 1e-9)


def run_job(backend, scene_id: str, steps: int, preview_hz: float | None) -> tuple[JobWatch, float]:
    preview = (m.PreviewSettings(enabled=False) if preview_hz is None
               else m.PreviewSettings(enabled=True, max_rate_hz=preview_hz, max_side=64))
    request = dataclasses.replace(edit_request(scene_id, reconstruction_steps=0, total_steps=steps, every=10**6),
                                  preview=preview)
    with backend.client() as client:
        watch = JobWatch(client.start_edit(request).job_id)
        watch.follow(client, lambda w: w.states[-1:] == ["done"])
    return watch, steps_per_second(watch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--cancels", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="NeRF steps per preview-overhead run")
    parser.add_argument("--preview-hz", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2, help="preview on/off runs each (alternating)")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"benchmark": "server", "device": f"cpu ({platform.processor() or platform.machine()})"}
    with tempfile.TemporaryDirectory() as folder:
        backend = start_backend(Path(folder) / "server")
        try:
            result["upload"] = measure_upload(backend, args.upload_mb)
            scene = make_tiny_scene(Path(folder) / "scene", num_views=10, size=64)
            with backend.client() as client:
                scene_id = upload(client, scene)
            latencies = []
            for _ in range(args.cancels):
                with backend.client() as client:
                    watch = JobWatch(client.start_edit(edit_request(scene_id, reconstruction_steps=20,
                                                                    total_steps=10**6, every=4)).job_id)
                    watch.follow(client, lambda w: sum(p.phase == "editing" for p in w.progress) >= 3)
                    asked = time.monotonic()
                    client.cancel(watch.job_id)
                    watch.follow(client, lambda w: "cancelled" in w.states, timeout_s=120)
                    latencies.append(watch.state_times["cancelled"] - asked)
            result["cancel_latency_s"] = {"median": round(statistics.median(latencies), 3),
                                          "max": round(max(latencies), 3), "runs": len(latencies)}
            off, on, previews = [], [], []
            for _ in range(args.repeats):
                off.append(run_job(backend, scene_id, args.steps, None)[1])
                watch, rate = run_job(backend, scene_id, args.steps, args.preview_hz)
                on.append(rate)
                previews.append(len(watch.previews))
            slowdown = 1 - statistics.median(on) / statistics.median(off)
            result["preview"] = {"steps_per_s_off": round(statistics.median(off), 2),
                                 "steps_per_s_on": round(statistics.median(on), 2),
                                 "slowdown_percent": round(100 * slowdown, 2), "requested_hz": args.preview_hz,
                                 "previews_per_run": previews, "max_side": 64, "goal_percent": 5}
        finally:
            backend.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
