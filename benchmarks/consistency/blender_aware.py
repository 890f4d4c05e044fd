"""What Blender's knowledge buys (issue 13), on the consistency dataset rendered with ``--knowledge``: each training
view's exact depth and the edited object's mask, and the scene's ground-truth mesh. Prints one JSON object.

    python -m benchmarks.consistency.render_dataset --out DATA --train-views 16 --heldout-views 4 --size 64 --knowledge
    python -m benchmarks.consistency.blender_aware --data DATA --steps 900 --edit-steps 600

* **depth**: the original scene reconstructed with and without depth supervision (depth-nerfacto's loss), with
  snapshots along the way: held-out PSNR against the steps, the steps each needs to reach the no-depth run's final
  PSNR, and, for the exported geometry, the share of points farther than ``--floater-distance`` from the
  ground-truth surfaces (floaters) and the Chamfer distance of the mesh to the ground-truth mesh.
* **masks**: Iterative Dataset Update with the SIMULATED editor (an SDEdit-like blend toward Blender's render of the
  edit, with per-view inconsistencies: not InstructPix2Pix) from the same reconstruction, with and without the
  edited object's masks: how far the held-out PSNR of the unedited region drifts from the reconstruction's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.config import (  # noqa: E402
    EXACT_DEPTH_LOSS_MULT,
    EXACT_DEPTH_SIGMA,
    EXACT_DEPTH_SIGMA_START,
    DatasetUpdateConfig,
    EditJobConfig,
    NerfConfig,
    OutputConfig,
)
from backend.editing.simulated import SimulatedInstructEditor  # noqa: E402
from backend.job.snapshot_export import export_stored_snapshot  # noqa: E402
from backend.job.snapshots import SnapshotStore  # noqa: E402
from benchmarks.consistency import metrics  # noqa: E402
from benchmarks.consistency.images import read_capture_images  # noqa: E402
from benchmarks.consistency.methods import MethodRun, render_heldout, run_job  # noqa: E402
from benchmarks.consistency.run import nerf_config  # noqa: E402

TARGET_DRIFT_DB = 0.3
TARGET_STEP_RATIO = 1 / 3


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class KeepOriginal:
    """Not an editor: returns each view's original image, so an 'editing' phase is plain reconstruction with the
    engine's snapshots along the way (the depth experiment's learning curve)."""

    num_train_timesteps = 1000

    def encode_instruction(self, instruction: str) -> str:
        return instruction

    def edit(self, render: torch.Tensor, original: torch.Tensor, instruction: Any, **kwargs: Any) -> torch.Tensor:
        return original.clone()


def strip(capture: Path, out: Path, keys: tuple[str, ...]) -> Path:
    """A copy of ``capture``'s transforms.json without the per-frame ``keys`` (images stay where they are)."""
    out.mkdir(parents=True, exist_ok=True)
    transforms = json.loads((capture / "transforms.json").read_text())
    for frame in transforms["frames"]:
        for key in keys:
            frame.pop(key, None)
        for key in ("file_path", "depth_file_path", "edit_mask_path"):
            if key in frame:
                frame[key] = str((capture / frame[key]).resolve())
    (out / "transforms.json").write_text(json.dumps(transforms, indent=2))
    return out


def curve(run: MethodRun, heldout: Path, originals: list[np.ndarray]) -> list[tuple[int, float]]:
    """(NeRF step, held-out PSNR vs the original scene) of every snapshot of ``run``."""
    store = SnapshotStore(run.job_dir / "snapshots")
    points = []
    for step in store.steps():
        renders = render_heldout(run, heldout, store.model(step))
        points.append((step, float(np.mean([metrics.psnr(r, o) for r, o in zip(renders, originals)]))))
    return points


def steps_to(points: list[tuple[int, float]], psnr: float) -> int | None:
    """The first snapshot step reaching ``psnr`` (None: never)."""
    return next((step for step, value in points if value >= psnr), None)


def geometry_scores(run: MethodRun, truth: np.ndarray, floater_m: float) -> dict[str, float]:
    """Floaters (share of exported points farther than ``floater_m`` from the ground truth) and the symmetric
    Chamfer distance between the exported mesh's surface and the ground-truth surface (metres)."""
    import trimesh
    from plyfile import PlyData
    from scipy.spatial import cKDTree

    store = SnapshotStore(run.job_dir / "snapshots")
    step = store.steps()[-1]
    export = export_stored_snapshot(run.job_dir, step, "cpu", threading.Event(), lambda progress: None)
    cloud = PlyData.read(str(store.folder(step) / export.point_cloud))["vertex"]
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1).astype(np.float64)
    mesh = trimesh.load(store.folder(step) / export.mesh, process=False)
    surface = surface_points(store.folder(step) / export.mesh, len(truth)) if len(mesh.faces) else points
    truth_tree, surface_tree = cKDTree(truth), cKDTree(surface)
    to_truth = truth_tree.query(points)[0]
    chamfer = 0.5 * (float(truth_tree.query(surface)[0].mean()) + float(surface_tree.query(truth)[0].mean()))
    return {"points": int(len(points)), "floater_fraction": float(np.mean(to_truth > floater_m)),
            "median_point_error_m": float(np.median(to_truth)), "chamfer_m": chamfer,
            "mesh_faces": int(len(mesh.faces))}


def surface_points(path: Path, count: int) -> np.ndarray:
    """``count`` points spread over a PLY mesh's surface (plyfile reads Blender's PLY, with its quads)."""
    import trimesh
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    vertices = np.stack([ply["vertex"][axis] for axis in "xyz"], 1).astype(np.float64)
    triangles = [(face[0], face[i], face[i + 1]) for face in ply["face"]["vertex_indices"] for i in range(1, len(face) - 1)]
    mesh = trimesh.Trimesh(vertices=vertices, faces=np.asarray(triangles), process=False)
    return np.asarray(mesh.sample(count, seed=0), dtype=np.float64)


def mask_experiment(args: argparse.Namespace, data: Path, out: Path, start_run: MethodRun, scene_plain: Path,
                    heldout_original: list[np.ndarray], heldout_edited: list[np.ndarray], unedited: list[np.ndarray],
                    config: Any) -> dict[str, Any]:
    """DU (simulated editor) from the no-depth reconstruction, with and without the edited object's masks, and the
    same number of steps of plain training (the originals kept) as the reference for the unedited region: DU also
    trains the NeRF longer, which alone changes that region's PSNR."""
    originals = list(read_capture_images(data / "original").values())
    targets = list(read_capture_images(data / "edited_gt").values())
    start = SnapshotStore(start_run.job_dir / "snapshots")
    start_model = start.model(start.steps()[-1])

    def unedited_psnr(renders: list[np.ndarray]) -> float:
        return float(np.mean([metrics.psnr(r, o, m) for r, o, m in zip(renders, heldout_original, unedited)]))

    reconstruction = unedited_psnr(render_heldout(start_run, data / "heldout_original", start_model))
    continued = run_job("continued_reconstruction", config(0, False, args.edit_steps, args.edit_steps + 1, 0),
                        KeepOriginal(), scene_plain, out / "jobs" / "continued_reconstruction", log,
                        start_checkpoint=start_model)
    reference = unedited_psnr(render_heldout(continued, data / "heldout_original"))
    masked_scene = strip(data / "original", out / "scene_masks", ("depth_file_path",))
    results: dict[str, Any] = {"reconstruction_unedited_psnr": reconstruction,
                               "continued_reconstruction_unedited_psnr": reference}
    for name, scene in (("du_without_masks", scene_plain), ("du_with_masks", masked_scene)):
        editor = SimulatedInstructEditor.from_images(originals, targets)
        run = run_job(name, config(0, False, args.edit_steps, args.edit_rate, 0), editor, scene,
                      out / "jobs" / name, log, start_checkpoint=start_model)
        renders = render_heldout(run, data / "heldout_original")
        results[name] = {
            "psnr_vs_edit": float(np.mean([metrics.psnr(r, t) for r, t in zip(renders, heldout_edited)])),
            "psnr_unedited_region": unedited_psnr(renders),
            "psnr_edited_region_vs_edit": float(np.mean([metrics.psnr(r, t, ~m) for r, t, m in
                                                         zip(renders, heldout_edited, unedited)])),
        }
        # drift: how much the edit cost the unedited region, against training as long on the originals
        results[name]["unedited_drift_db"] = reference - results[name]["psnr_unedited_region"]
        results[name]["vs_reconstruction_db"] = results[name]["psnr_unedited_region"] - reconstruction
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset rendered with render_dataset --knowledge")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "in2n-blender-aware")
    parser.add_argument("--steps", type=int, default=900, help="reconstruction steps (the depth experiment's)")
    parser.add_argument("--every", type=int, default=100, help="a snapshot (held-out PSNR) every this many steps")
    parser.add_argument("--edit-steps", type=int, default=600, help="Iterative DU steps of the mask experiment")
    parser.add_argument("--edit-rate", type=int, default=5, help="DU: edit one view every this many steps")
    parser.add_argument("--floater-distance", type=float, default=0.05, help="metres from the ground truth")
    parser.add_argument("--preset", choices=("gpu", "cpu"), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--depth-loss-mult", type=float, default=NerfConfig().depth_loss_mult,
                        help="weight of the depth loss in the depth run (default: the product's, %(default)g)")
    parser.add_argument("--exact-depth", action="store_true",
                        help="weight depth as the server does for Blender's exact depth (EXACT_DEPTH_* of "
                             "backend.config: weight, and a window narrowed over --steps) instead of "
                             "--depth-loss-mult with depth-nerfacto's window")
    parser.add_argument("--parts", default="depth,masks", help="which experiments: depth, masks or both")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    args.quick, args.rays = False, None  # what benchmarks.consistency.run.nerf_config reads
    started = time.perf_counter()
    data, out = args.data.resolve(), args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    if not (data / "ground_truth.ply").is_file():
        parser.error(f"--data {data}: no ground_truth.ply; render it with render_dataset --knowledge")
    heldout_original = [metrics.to_float(i) for i in read_capture_images(data / "heldout_original").values()]
    heldout_edited = [metrics.to_float(i) for i in read_capture_images(data / "heldout_edited").values()]
    unedited = [~metrics.edited_region_mask(o, e) for o, e in zip(heldout_original, heldout_edited)]
    truth = surface_points(data / "ground_truth.ply", 60000)

    def config(steps: int, use_depth: bool, edit_steps: int, edit_rate: int, every: int) -> EditJobConfig:
        nerf = replace(nerf_config(args, 0), use_depth=use_depth, depth_loss_mult=args.depth_loss_mult)
        if args.exact_depth:
            nerf = replace(nerf, depth_loss_mult=EXACT_DEPTH_LOSS_MULT, depth_sigma=EXACT_DEPTH_SIGMA,
                           depth_sigma_start=EXACT_DEPTH_SIGMA_START, depth_sigma_steps=steps or edit_steps)
        return EditJobConfig(prompt="make the yellow sphere blue (SIMULATED editor)", memory_mode="in2n-tiny",
                             device=args.device, nerf=replace(nerf, reconstruction_steps=steps),
                             update=DatasetUpdateConfig(total_steps=edit_steps, edit_every_n_steps=edit_rate,
                                                        seed=args.seed),
                             output=OutputConfig(checkpoint_every=10**9, keep_checkpoints=1, snapshot_every=every,
                                                 snapshot_views=1, export_num_points=60000, poisson_depth=8))

    # depth: reconstruction as an 'editing' phase that keeps the originals, a snapshot every --every steps
    scene_depth = strip(data / "original", out / "scene_depth", ("edit_mask_path",))
    scene_plain = strip(data / "original", out / "scene_plain", ("edit_mask_path", "depth_file_path"))
    runs = {}
    for name, scene, use_depth in (("no_depth", scene_plain, False), ("depth", scene_depth, True)):
        if name == "depth" and "depth" not in parts:
            continue
        runs[name] = run_job(name, config(0, use_depth, args.steps, args.steps + 1, args.every), KeepOriginal(),
                             scene, out / "jobs" / name, log)
    results: dict[str, Any] = {}
    if "depth" in parts:
        curves = {name: curve(run, data / "heldout_original", heldout_original) for name, run in runs.items()}
        final = curves["no_depth"][-1][1]
        results["depth"] = {
            "depth_loss_mult": args.depth_loss_mult, "heldout_psnr_by_step": curves, "no_depth_final_psnr": final,
            "steps_to_that_psnr": {name: steps_to(points, final) for name, points in curves.items()},
            # for each no-depth snapshot: the first depth snapshot at least as good (None: never)
            "depth_step_matching_no_depth_step": {step: steps_to(curves["depth"], psnr)
                                                  for step, psnr in curves["no_depth"]},
            "geometry": {name: geometry_scores(run, truth, args.floater_distance) for name, run in runs.items()}}

    if "masks" in parts:
        results["masks"] = mask_experiment(args, data, out, runs["no_depth"], scene_plain, heldout_original,
                                           heldout_edited, unedited, config)

    steps_needed = results.get("depth", {}).get("steps_to_that_psnr", {})
    results = {
        "benchmark": "consistency/blender_aware",
        "dataset": json.loads((data / "dataset.json").read_text()),
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")} | {"data": str(data)},
        "simulated_editor": "SIMULATED (SDEdit-like blend toward Blender's render of the edit; not InstructPix2Pix)",
        **results,
        "targets": {
            "masked_unedited_drift_within_0_3db": "masks" in results and abs(
                results["masks"]["du_with_masks"]["unedited_drift_db"]) <= TARGET_DRIFT_DB,
            "depth_reaches_it_in_a_third_of_the_steps": steps_needed.get("depth") is not None
            and steps_needed.get("no_depth") is not None
            and steps_needed["depth"] <= TARGET_STEP_RATIO * steps_needed["no_depth"],
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
