"""Add-on speed in Blender (bpy module): importing a coloured point cloud and updating the live preview.

    <blender env python> -m benchmarks.bench_addon [--points 1000000] [--preview 512] [--frames 50]

* point cloud import: a binary PLY (xyz float32 + uchar RGB, the engine's format) through the add-on's
  ``import_results`` (Blender's own PLY importer, moved into a result collection, vertex-colour material), seconds;
* preview update: one ``job_preview`` image (uint8 RGB, row 0 = top) converted to Blender's layout
  (``to_blender_pixels``, done on the worker thread in the add-on) plus the main-thread part (``show_preview``:
  ``foreach_set`` into the one preview Image and ``update()``), milliseconds per frame.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="in2n_bench_user_"))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from blender_addon.bpy_shell import results, runtime  # noqa: E402
from blender_addon.core import session as ss  # noqa: E402
from blender_addon.core.pixels import to_blender_pixels  # noqa: E402
from tests.blender.scripted_backend import ply_bytes  # noqa: E402


def bench_point_cloud(count: int, folder: Path, repeats: int = 3) -> dict[str, float]:
    rng = np.random.default_rng(0)
    path = folder / "pointcloud.ply"
    path.write_bytes(ply_bytes(rng.normal(size=(count, 3)).astype(np.float32) + 5.0,
                               rng.integers(0, 256, (count, 3), dtype=np.uint8)))
    times = []
    for _ in range(repeats):
        bpy.ops.wm.read_homefile(use_empty=True)
        start = time.perf_counter()
        collection = results.import_results(bpy.context.scene, {"pointcloud.ply": path}, {"pointcloud.ply": "pointcloud"},
                                            job_id="bench")
        times.append(time.perf_counter() - start)
        obj = collection.objects[0]
        assert len(obj.data.vertices) == count and "Col" in obj.data.color_attributes
    return {"pointcloud_points": count, "pointcloud_import_s": min(times), "pointcloud_import_s_median": statistics.median(times),
            "ply_megabytes": round(path.stat().st_size / 2**20, 1)}


def bench_preview(side: int, frames: int) -> dict[str, float]:
    bpy.ops.wm.read_homefile(use_empty=True)
    camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(4)]
    convert, apply = [], []
    for index in range(frames):
        start = time.perf_counter()
        pixels = to_blender_pixels(images[index % 4])
        middle = time.perf_counter()
        runtime.show_preview(ss.PreviewSnapshot(index, side, side, pixels))
        end = time.perf_counter()
        convert.append(middle - start)
        apply.append(end - middle)
    return {"preview_side": side, "preview_frames": frames,
            "preview_convert_ms": 1000 * statistics.median(convert),
            "preview_apply_ms": 1000 * statistics.median(apply),
            "preview_update_ms": 1000 * statistics.median([a + b for a, b in zip(convert, apply)])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--preview", type=int, default=512, help="preview side in pixels")
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, object] = {"benchmark": "addon", "blender": bpy.app.version_string,
                                     "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"}
        result.update(bench_point_cloud(args.points, Path(tmp)))
        result.update(bench_preview(args.preview, args.frames))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
