"""3D-consistency benchmark runner (backend env): Iterative DU vs one-shot editing vs no edit, on held-out cameras.

Needs a dataset from ``benchmarks.consistency.render_dataset`` (blender env). Every method runs through the product's
engine; the editor is the SIMULATED one of :mod:`backend.editing.simulated` (ground truth known).

    # GPU (the reference run; about 5 min on one H100 with the defaults)
    python -m benchmarks.consistency.run --data DATA --device cuda
    # CPU smoke run on a small dataset (render it with --size 64 --train-views 8 --heldout-views 2)
    python -m benchmarks.consistency.run --data DATA_SMALL --quick

Prints progress lines, then one JSON object (last line); writes ``results.json``, ``consistency.png`` (bar charts) and
``heldout_grid.png`` (GT original | GT edit | no edit | one-shot | Iterative DU) to ``--out`` and, when the ``OUT``
environment variable is set, to ``$OUT`` too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.config import DatasetUpdateConfig, EditJobConfig, NerfConfig, OutputConfig, tiny_nerf_config  # noqa: E402
from backend.editing.simulated import SimulatedInstructEditor, SimulationConfig  # noqa: E402
from backend.job.snapshots import SnapshotStore  # noqa: E402
from backend.pixels import to_uint8  # noqa: E402
from benchmarks.consistency import metrics  # noqa: E402
from benchmarks.consistency.images import read_capture_images, write_rgb  # noqa: E402
from benchmarks.consistency.layout import DATASET_FILE  # noqa: E402
from benchmarks.consistency.methods import MethodRun, render_heldout, run_job, write_one_shot_scene  # noqa: E402
from benchmarks.consistency.plot import plot_results  # noqa: E402

TARGET_PSNR_DB = 30.0
TARGET_MARGIN_DB = 5.0
TARGET_DRIFT_DB = 1.0
PROMPT = "make the yellow sphere blue (simulated editor)"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def nerf_config(args: argparse.Namespace, steps: int) -> NerfConfig:
    """nerfacto for 128 px synthetic views: no LPIPS (no pretrained weights offline), no pose refinement (the poses
    are exact), pixel sampling; ``--quick`` uses the engine's tiny CPU preset."""
    common: dict[str, Any] = dict(reconstruction_steps=steps, use_lpips=False, patch_size=1, camera_optimizer="off",
                                  seed=args.seed)
    if args.quick:
        return tiny_nerf_config(**common, rays_per_batch=args.rays or 512)
    if args.preset == "cpu":  # the tiny preset with a finer hash grid: a CPU run that can fit a 64 px scene
        return tiny_nerf_config(**common, rays_per_batch=args.rays or 1024, hidden_dim=32, num_levels=8, max_res=256,
                                log2_hashmap_size=14)
    return NerfConfig(**common, rays_per_batch=args.rays or 4096, max_res=1024, eval_num_rays_per_chunk=1 << 14)


def job_config(args: argparse.Namespace, reconstruction_steps: int, total_steps: int) -> EditJobConfig:
    return EditJobConfig(
        prompt=PROMPT,
        memory_mode="in2n-tiny",  # no LPIPS; the (simulated) editor's precision setting does not apply
        device=args.device,
        nerf=nerf_config(args, reconstruction_steps),
        update=DatasetUpdateConfig(total_steps=total_steps, edit_every_n_steps=args.edit_every_n_steps, t_min=args.t_min,
                                   t_max=args.t_max, seed=args.seed),
        # Only images are scored here: no geometry export.
        output=OutputConfig(checkpoint_every=10**9, keep_checkpoints=1, snapshot_every=0, export_geometry=False),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder from render_dataset")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "in2n-consistency",
                        help="output folder (job directories, renders, results)")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--quick", action="store_true", help="tiny NeRF and few steps: a CPU smoke run")
    parser.add_argument("--preset", choices=("gpu", "cpu"), default="gpu",
                        help="NeRF size without --quick: gpu (nerfacto, 4096 rays) or cpu (small hash grid, 1024 rays)")
    parser.add_argument("--steps", type=int, default=None,
                        help="reconstruction steps of the original scene (default 2000; --quick 60)")
    parser.add_argument("--edit-steps", dest="total_steps", type=int, default=None,
                        help="Iterative DU steps after the reconstruction (default 2000; --quick 40)")
    parser.add_argument("--one-shot-steps", type=int, default=None,
                        help="steps of the one-shot NeRF (default: --steps + --edit-steps, the DU's total)")
    parser.add_argument("--edit-rate", dest="edit_every_n_steps", type=int, default=10, help="DU: edit one view every this many steps")
    parser.add_argument("--t-min", type=float, default=0.02, help="DU: lowest noise level (fraction)")
    parser.add_argument("--t-max", type=float, default=0.98, help="DU: highest noise level (fraction)")
    parser.add_argument("--one-shot-t", type=float, default=0.98, help="one-shot: noise level of its single edit")
    parser.add_argument("--rays", type=int, default=None, help="rays per NeRF step (default 4096; --quick 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 60 if args.quick else 2000
    if args.total_steps is None:
        args.total_steps = 40 if args.quick else 2000
    if args.one_shot_steps is None:
        args.one_shot_steps = args.steps + args.total_steps
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if not (args.data / DATASET_FILE).is_file():
        parser.error(f"--data {args.data}: no {DATASET_FILE}; render it with benchmarks.consistency.render_dataset")
    if min(args.steps, args.one_shot_steps) < 1 or args.total_steps < 0:
        parser.error("--steps and --one-shot-steps must be >= 1, --edit-steps >= 0")
    return args


def score(renders: list[np.ndarray], targets: list[np.ndarray], masks: list[np.ndarray],
          references: list[np.ndarray] | None) -> dict[str, Any]:
    per_view = [metrics.view_metrics(render, target, mask, None if references is None else references[index])
                for index, (render, target, mask) in enumerate(zip(renders, targets, masks))]
    return {"mean": metrics.mean_metrics(per_view), "per_view": per_view}


def method_entry(run: MethodRun, scores: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"status": run.status, "train_seconds": round(run.train_seconds, 2),
            "total_seconds": round(run.total_seconds, 2), "steps": run.steps, "edits": run.edits,
            "notes": run.notes, **extra, **scores}


def save_grid(path: Path, columns: list[list[np.ndarray]], rows: int = 4) -> None:
    """One row per held-out view (at most ``rows``), one column per image list."""
    count = min(rows, len(columns[0]))
    grid = np.concatenate([np.concatenate([column[i] for column in columns], 1) for i in range(count)], 0)
    write_rgb(path, to_uint8(grid))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    data, out = args.data.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    dataset = json.loads((data / DATASET_FILE).read_text())
    simulation = SimulationConfig()
    originals, targets = read_capture_images(data / "original"), read_capture_images(data / "edited_gt")
    if list(originals) != list(targets):
        raise ValueError(f"{data / 'original'} and {data / 'edited_gt'} do not list the same frames")
    editor = SimulatedInstructEditor.from_images(list(originals.values()), list(targets.values()), simulation)
    heldout_original = [metrics.to_float(i) for i in read_capture_images(data / "heldout_original").values()]
    heldout_edited = [metrics.to_float(i) for i in read_capture_images(data / "heldout_edited").values()]
    masks = [metrics.edited_region_mask(o, e) for o, e in zip(heldout_original, heldout_edited)]
    for index, mask in enumerate(masks):
        write_rgb(out / "masks" / f"heldout_{index:03d}.png", mask.astype(np.uint8) * 255)
    log(f"dataset {data}: {len(editor.originals)} training views, {len(masks)} held-out views, edited region "
        f"{100 * float(np.mean(masks)):.1f}% of held-out pixels; device {args.device}")

    # (c) no edit: the reconstruction of the original scene, shared with (a) as its starting point.
    no_edit = run_job("no_edit", job_config(args, args.steps, 0), editor, data / "original", out / "jobs" / "no_edit",
                      log)
    # (a) Iterative DU from that reconstruction.
    snapshots = SnapshotStore(out / "jobs" / "no_edit" / "snapshots")
    reconstruction = snapshots.model(snapshots.steps()[0])
    iterative = run_job("iterative_du", job_config(args, args.steps, args.total_steps), editor, data / "original",
                        out / "jobs" / "iterative_du", log, start_checkpoint=reconstruction)
    # (b) one-shot: edit every image once, then a fresh NeRF.
    one_shot_t = min(int(args.one_shot_t * editor.num_train_timesteps), editor.num_train_timesteps - 1)
    edit_seconds = write_one_shot_scene(editor, data / "original", out / "one_shot_scene", one_shot_t, args.seed)
    one_shot = run_job("one_shot", job_config(args, args.one_shot_steps, 0), editor, out / "one_shot_scene",
                       out / "jobs" / "one_shot", log)
    one_shot.train_seconds += edit_seconds
    one_shot.total_seconds += edit_seconds

    renders = {}
    for run in (no_edit, one_shot, iterative):
        log(f"[{run.name}] rendering {len(masks)} held-out views")
        renders[run.name] = render_heldout(run, data / "heldout_original")
        for index, image in enumerate(renders[run.name]):
            write_rgb(out / "renders" / run.name / f"heldout_{index:03d}.png", to_uint8(image))

    reference = renders["no_edit"]
    scores = {name: score(images, heldout_edited, masks, None if name == "no_edit" else reference)
              for name, images in renders.items()}
    reconstruction_psnr = float(np.mean([metrics.psnr(r, o) for r, o in zip(reference, heldout_original)]))
    methods = {
        "iterative_du": method_entry(iterative, scores["iterative_du"],
                                     train_seconds_with_reconstruction=round(
                                         iterative.train_seconds + no_edit.train_seconds, 2)),
        "one_shot": method_entry(one_shot, scores["one_shot"], edit_seconds=round(edit_seconds, 2),
                                 one_shot_timestep=one_shot_t),
        "no_edit": method_entry(no_edit, scores["no_edit"], reconstruction_psnr_vs_original=reconstruction_psnr),
    }
    mean = {name: entry["mean"] for name, entry in methods.items()}
    du_margin = mean["iterative_du"]["psnr"] - mean["one_shot"]["psnr"]
    drift = {name: mean["no_edit"]["psnr_unedited_region"] - mean[name]["psnr_unedited_region"]
             for name in ("iterative_du", "one_shot")}
    results = {
        "benchmark": "consistency",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "quick": args.quick,
        "simulated_editor": dataclasses.asdict(simulation),
        "dataset": dataset,
        "settings": {"reconstruction_steps": args.steps, "total_steps": args.total_steps,
                     "one_shot_steps": args.one_shot_steps, "edit_every_n_steps": args.edit_every_n_steps, "t_min": args.t_min,
                     "t_max": args.t_max, "one_shot_t": args.one_shot_t, "rays_per_batch": no_edit_rays(args),
                     "seed": args.seed, "preset": "quick" if args.quick else args.preset,
                     "edited_region_fraction": float(np.mean(masks))},
        "methods": methods,
        "comparison": {
            "iterative_du_minus_one_shot_psnr_db": du_margin,
            "unedited_drift_db": drift,
            "no_edit_reconstruction_psnr_vs_original": reconstruction_psnr,
        },
        "targets": {
            "target_psnr_db": TARGET_PSNR_DB,
            "iterative_du_psnr_at_least_30db": mean["iterative_du"]["psnr"] >= TARGET_PSNR_DB,
            "iterative_du_at_least_5db_above_one_shot": du_margin >= TARGET_MARGIN_DB,
            "iterative_du_unedited_within_1db_of_reconstruction": drift["iterative_du"] <= TARGET_DRIFT_DB,
        },
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_outputs(results, renders, heldout_original, heldout_edited, out)
    print(json.dumps({k: v for k, v in results.items() if k != "methods"} | {
        "methods": {name: {k: v for k, v in entry.items() if k != "per_view"} for name, entry in methods.items()}}),
        flush=True)
    return 0


def no_edit_rays(args: argparse.Namespace) -> int:
    return nerf_config(args, 1).rays_per_batch


def write_outputs(results: dict[str, Any], renders: dict[str, list[np.ndarray]], heldout_original: list[np.ndarray],
                  heldout_edited: list[np.ndarray], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_results(results, out / "consistency.png")
    save_grid(out / "heldout_grid.png", [heldout_original, heldout_edited, renders["no_edit"], renders["one_shot"],
                                         renders["iterative_du"]])
    extra = os.environ.get("OUT")
    if extra:
        target = Path(extra)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "consistency.png", "heldout_grid.png"):
            shutil.copy2(out / name, target / name)
    log(f"results in {out}" + (f" and {extra}" if extra else ""))


if __name__ == "__main__":
    raise SystemExit(main())
