"""The job's final NeRF rendered from cameras it never trained on (backend environment), so the demo can score the
NeRF itself on the same held-out views as the result imported into Blender: how much the import loses.

    python -m demo.nerf_views PLAN.json

``PLAN.json``: ``{"job": <job folder>, "out": <folder>, "cameras": [{"name", "transform_matrix" (4x4, Blender's
matrix_world), "fl_x", "fl_y", "cx", "cy", "w", "h"}, ...]}``. Writes ``<out>/<name>.png`` per camera (the newest
snapshot's NeRF: the job's final one) and prints one JSON object with the files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from backend import atomic
from backend.job.jobdir import JobDir
from backend.job.snapshot_export import load_snapshot
from backend.job.snapshots import SnapshotStore
from backend.nerf.frames import make_camera
from backend.pixels import to_uint8


def render_plan(plan: dict) -> dict[str, str]:  # type: ignore[type-arg]
    job = Path(plan["job"])
    store = SnapshotStore(JobDir(job).snapshots)
    newest = store.newest()
    if newest is None:
        raise SystemExit(f"{job}: the job has no snapshot to render")
    trainer, transform, _ = load_snapshot(job, newest.step, "cpu")
    out = Path(plan["out"])
    written = {}
    for camera in plan["cameras"]:
        pose = transform.c2w_to_nerfstudio(np.asarray(camera["transform_matrix"], dtype=np.float64))
        nerf_camera = make_camera(pose, camera["fl_x"], camera["fl_y"], camera["cx"], camera["cy"], camera["w"],
                                  camera["h"], trainer.device)
        path = out / f"{camera['name']}.png"
        atomic.write_png(path, to_uint8(trainer.render(nerf_camera)))
        written[camera["name"]] = str(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(args[0]).read_text())
    print(json.dumps({"files": render_plan(plan)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
