"""Every scene of the set through a real job with a preset's settings, as the server would run it (backend
environment). Prints one JSON object per scene, then a summary line.

    python -m benchmarks.scene_set.render_scenes --out SCENES          # blender environment
    python -m benchmarks.scene_set.run --scenes SCENES [--preset quick] [--bake-resolution 256] [--only NAME ...]
        [--edit appearance|grown] [--no-masks] [--overrides JSON]

Per scene the job is the server's: the request an add-on sends for "Selected objects only" with depth from Blender
(``backend.server.jobs.requests.job_config`` resolves it), the SIMULATED editor (an SDEdit-like blend toward
Blender's render of the intended edit: the selected object recoloured; not InstructPix2Pix). Measured:

* ``geometry``: whether the NeRF gave back geometry; the median distance of its points and mesh vertices to the
  scene's true surfaces (accuracy: what lies in the export region besides the object, such as the ground under it,
  counts as right where it is), and of the selected object's true surface to the nearest exported point
  (completeness), each as a fraction of the object's bounding radius (the issue's bar: 5 %);
* ``bake``: the texture baked onto the object against the textures the same baker makes from Blender's renders of
  the intended edit (what a NeRF that reached the edit would give) and of the original scene, PSNR over the
  object's texels, and the coverage;
* ``nerf_vs_target``: the final NeRF rendered from the training cameras against the edit's target images, PSNR
  inside the edited region (where the target differs from the original, dilated) and over the whole image: whether
  the edit took hold in the NeRF (for ``--edit grown``, the shape edit, this is the only score that applies);
* ``seconds`` of the job.

``--edit grown`` edits toward ``targets_grown/`` (the selected object grown by 30 % and recoloured) instead of the
recolouring; ``--no-masks`` edits the whole view (a mask of the original object would cut a grown one off).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

import capture  # noqa: E402
from backend.bake import BakeView, bake_surfaces, surface_texels  # noqa: E402
from backend.engine import EditEngine  # noqa: E402
from backend.job.jobdir import JobDir  # noqa: E402
from backend.job.snapshot_export import load_snapshot  # noqa: E402
from backend.job.snapshots import SnapshotStore  # noqa: E402
from backend.job.types import JobCallbacks  # noqa: E402
from backend.nerf.frames import make_camera  # noqa: E402
from backend.pixels import to_uint8  # noqa: E402
from backend.server.jobs.config import JobServiceConfig  # noqa: E402
from backend.server.jobs.requests import job_config  # noqa: E402
from backend.surfaces import read_surfaces  # noqa: E402
from benchmarks.consistency import metrics  # noqa: E402
from protocol import messages as m  # noqa: E402

GROWN_TARGET_KEY = "grown_target_file_path"
"""render_scenes' frame key of the shape edit's targets (render_scenes runs in Blender's environment: not imported)."""
GEOMETRY_BAR = 0.05
"""The issue's bar: median distance to the true surface at most 5 % of the edited object's bounding radius."""


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def store_knowledge(folder: Path) -> None:
    """The scene's depth and masks as the server stores uploaded ones (16-bit millimetre PNGs, mask PNGs), named in
    ``transforms.json`` (idempotent)."""
    transforms = json.loads((folder / "transforms.json").read_text())
    for frame in transforms["frames"]:
        stem = Path(frame["file_path"]).stem
        knowledge = np.load(folder / "knowledge" / f"{stem}.npz")
        for key, sub, pixels in (("depth_file_path", "depth",
                                  np.rint(knowledge["depth"] * 1000).clip(0, 65535).astype(np.uint16)),
                                 ("edit_mask_path", "edit_masks", knowledge["mask"])):
            (folder / sub).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(folder / sub / f"{stem}.png")
            frame[key] = f"{sub}/{stem}.png"
    (folder / "transforms.json").write_text(json.dumps(transforms, indent=1))


def job_input(folder: Path, edit: str, masks: bool, work: Path) -> Path:
    """The scene as the job reads it: ``folder`` itself for the recolouring with masks, else a copy of its
    ``transforms.json`` naming the grown targets and / or no masks, its folders linked (not copied)."""
    if edit == "appearance" and masks:
        return folder
    transforms = json.loads((folder / "transforms.json").read_text())
    for frame in transforms["frames"]:
        if edit == "grown":
            frame["target_file_path"] = frame[GROWN_TARGET_KEY]
        if not masks:
            frame.pop("edit_mask_path", None)
        frame.pop(GROWN_TARGET_KEY, None)
    copy = work / f"{folder.name}_{edit}{'' if masks else '_no_masks'}_input"
    copy.mkdir(parents=True, exist_ok=True)
    (copy / "transforms.json").write_text(json.dumps(transforms, indent=1))
    for path in folder.iterdir():
        if path.name != "transforms.json" and not (copy / path.name).exists():
            (copy / path.name).symlink_to(path.resolve())
    return copy


def nerf_vs_target(job: Path, scene: Path) -> dict[str, float]:
    """The job's newest snapshot rendered from its training cameras against their target images: mean PSNR inside
    the edited region (target vs original, dilated) and over the whole image."""
    store = SnapshotStore(JobDir(job).snapshots)
    newest = store.newest()
    if newest is None:
        return {}
    trainer, transform, _ = load_snapshot(job, newest.step, "cpu")
    region, whole = [], []
    for frame in capture.read_capture(scene).frames:
        k = frame.intrinsics
        pose = transform.c2w_to_nerfstudio(np.asarray(frame.transform_matrix, dtype=np.float64))
        render = to_uint8(trainer.render(make_camera(pose, k.fl_x, k.fl_y, k.cx, k.cy, k.w, k.h, trainer.device)))
        original = np.asarray(Image.open(scene / frame.file_path).convert("RGB"))
        target = np.asarray(Image.open(scene / frame.extra["target_file_path"]).convert("RGB"))
        render, original, target = (metrics.to_float(np.asarray(image)) for image in (render, original, target))
        edited = metrics.edited_region_mask(original, target)
        if edited.any():
            region.append(metrics.psnr(render, target, edited))
        whole.append(metrics.psnr(render, target))
    return {"edited_region_db": float(np.mean(region)) if region else float("nan"),
            "whole_image_db": float(np.mean(whole))}


def request_for(info: dict[str, Any], preset: str, bake_resolution: int,
                overrides: dict[str, Any] | None = None) -> m.EditStartRequest:
    """What the add-on sends for this scene with the preset chosen (the panel's settings follow the preset)."""
    low, high = np.asarray(info["bounds_min"]), np.asarray(info["bounds_max"])
    grow = 0.15 * float(np.linalg.norm(high - low))
    return m.EditStartRequest(
        scene_id="scene", instruction="recolour the selected object", preset=preset,
        schedule=m.PRESETS[preset].schedule, memory_mode=m.PRESETS[preset].memory_mode, use_depth=True,
        edit_region=m.EditRegion((low - grow).tolist(), (high + grow).tolist()),
        geometry=m.GeometrySettings(bake_resolution=bake_resolution),
        snapshots=m.SnapshotSettings(every_n_steps=0, views=2), engine_overrides=overrides or {})


def surface_distances(points: np.ndarray, triangles: np.ndarray, samples: int = 200_000) -> np.ndarray:
    """Distance of each point to the nearest of ``samples`` points spread over the triangles by area."""
    return cKDTree(surface_points(triangles, samples)).query(points)[0]


def surface_points(triangles: np.ndarray, samples: int = 50_000) -> np.ndarray:
    """``samples`` points spread over the triangles by area (seeded)."""
    rng = np.random.default_rng(0)
    areas = 0.5 * np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    chosen = rng.choice(len(triangles), samples, p=areas / areas.sum())
    a, b = rng.random((2, samples, 1))
    flip = (a + b) > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    tri = triangles[chosen]
    return tri[:, 0] + a * (tri[:, 1] - tri[:, 0]) + b * (tri[:, 2] - tri[:, 0])


def ply_points(path: Path) -> np.ndarray:
    from plyfile import PlyData

    vertex = PlyData.read(str(path))["vertex"]
    return np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1).astype(np.float64)


def reference_bake(folder: Path, resolution: int, key: str = "target_file_path") -> np.ndarray:
    """The texture the baker makes from Blender's renders of the intended edit (``target_file_path``) or of the
    original scene (``file_path``), with the cameras and depth of the scene."""
    scene = capture.read_capture(folder)
    views, targets = [], []
    for frame in scene.frames:
        k = frame.intrinsics
        stem = Path(frame.file_path).stem
        depth = np.load(folder / "knowledge" / f"{stem}.npz")["depth"].astype(np.float64)
        views.append(BakeView(np.asarray(frame.transform_matrix), k.fl_x, k.fl_y, k.cx, k.cy, k.w, k.h, depth))
        image = frame.file_path if key == "file_path" else frame.extra[key]
        targets.append(np.asarray(Image.open(folder / image).convert("RGB")) / 255.0)
    [texture] = bake_surfaces(read_surfaces(folder), views, lambda view: targets[view], resolution)
    return texture.image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-12))


def run_scene(folder: Path, preset: str, bake_resolution: int, work: Path,
              overrides: dict[str, Any] | None = None, edit: str = "appearance", masks: bool = True
              ) -> dict[str, Any]:
    info = json.loads((folder / "scene.json").read_text())
    store_knowledge(folder)
    scene = job_input(folder, edit, masks, work)
    config = job_config(request_for(info, preset, bake_resolution, overrides),
                        JobServiceConfig(jobs_dir=work, default_editor="simulated", device="cpu"))
    job = work / info["name"]
    logs: list[str] = []
    started = time.perf_counter()
    result = EditEngine(config).run(scene, job, JobCallbacks(on_log=logs.append))
    seconds = time.perf_counter() - started
    manifest = json.loads((job / "manifest.json").read_text()) if (job / "manifest.json").is_file() else {}
    scene_truth, object_truth = np.load(folder / "scene_truth.npy"), np.load(folder / "ground_truth.npy")
    radius = float(info["radius"])
    geometry: dict[str, Any] = {"error": manifest.get("geometry_error")}
    for key in ("point_cloud", "mesh"):
        path = manifest.get(key)
        if path and path.endswith(".ply"):
            points = ply_points(job / path)
            if not len(points):
                continue
            accuracy = surface_distances(points, scene_truth) / radius
            completeness = cKDTree(points).query(surface_points(object_truth))[0] / radius
            geometry[key] = {"points": int(len(points)), "accuracy_median": float(np.median(accuracy)),
                             "accuracy_p90": float(np.quantile(accuracy, 0.9)),
                             "completeness_median": float(np.median(completeness))}
    cloud = geometry.get("point_cloud")
    geometry["meets_bar"] = bool(cloud and max(cloud["accuracy_median"], cloud["completeness_median"]) <= GEOMETRY_BAR)
    bake: dict[str, Any] = {}
    if manifest.get("baked"):
        [record] = manifest["baked"]
        texture = np.asarray(Image.open(job / record["texture"]).convert("RGB"))
        reference = reference_bake(folder, bake_resolution)
        [surface] = read_surfaces(folder)
        (rows, cols, _), _, _ = surface_texels(surface, bake_resolution)
        original = reference_bake(folder, bake_resolution, "file_path")
        bake = {"coverage": record["coverage"],
                "psnr_vs_intended_edit_bake_db": psnr(texture[rows, cols], reference[rows, cols]),
                "psnr_vs_original_bake_db": psnr(texture[rows, cols], original[rows, cols])}
    return {"scene": info["name"], "views": info["views"], "radius_m": radius, "status": result.status,
            "error": result.error, "seconds": round(seconds, 1), "geometry": geometry, "bake": bake,
            "edit": edit, "masks": masks, "nerf_vs_target": nerf_vs_target(job, scene),
            "mask_coverage": info["mask_coverage"], "job": str(job)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(m.PRESETS), default="quick")
    parser.add_argument("--bake-resolution", type=int, default=256)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--jobs", type=Path, default=None, help="keep the job folders here (default: a temporary one)")
    parser.add_argument("--overrides", type=json.loads, default=None,
                        help="engine_overrides of the request as JSON, e.g. '{\"nerf\": {\"max_res\": 128}}'")
    parser.add_argument("--edit", choices=("appearance", "grown"), default="appearance",
                        help="the recolouring, or the shape edit (grown by 30 %% and recoloured)")
    parser.add_argument("--no-masks", action="store_true", help="edit whole views (no selected-object masks)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="scene_set_jobs_") as temporary:
        work = str(args.jobs or temporary)
        for folder in sorted(path.parent for path in args.scenes.glob("*/scene.json")):
            if args.only and folder.name not in args.only:
                continue
            log(f"scene {folder.name}")
            row = run_scene(folder, args.preset, args.bake_resolution, Path(work), args.overrides, args.edit,
                            not args.no_masks)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"preset": args.preset, "overrides": args.overrides, "edit": args.edit, "masks": not args.no_masks,
               "scenes": len(rows),
               "median_nerf_vs_target_region_db": float(np.median([row["nerf_vs_target"].get("edited_region_db", np.nan)
                                                                   for row in rows] or [np.nan])),
               "geometry_meets_bar": sum(row["geometry"]["meets_bar"] for row in rows),
               "geometry_exported": sum(bool(row["geometry"].get("point_cloud")) for row in rows),
               "baked": sum(bool(row["bake"]) for row in rows),
               "median_bake_psnr_db": float(np.median([row["bake"]["psnr_vs_intended_edit_bake_db"]
                                                       for row in rows if row["bake"]] or [np.nan])),
               "total_seconds": round(sum(row["seconds"] for row in rows), 1)}
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
