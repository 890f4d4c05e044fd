"""``python -m backend edit``: edit a nerfstudio scene with a text instruction, headless (no Blender needed)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from backend.config import (
    DatasetUpdateConfig,
    EditJobConfig,
    EditorConfig,
    NerfConfig,
    OutputConfig,
    tiny_nerf_config,
    validate_config,
)
from protocol import ValidationError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_SCENE = 3
EXIT_MISSING_WEIGHTS = 4
EXIT_CANCELLED = 130

DESCRIPTION = """\
Edit a 3D scene with a text instruction (Instruct-NeRF2NeRF).

Reads a nerfstudio scene (transforms.json + images), reconstructs it with nerfacto (unless --checkpoint gives a
trained one), then runs Iterative Dataset Update: every --edit-rate NeRF steps one view is re-rendered and edited by
InstructPix2Pix (conditioned on the ORIGINAL image and the instruction) and replaces that view's training image.
At the end a coloured point cloud and a vertex-coloured mesh are exported in the scene's own coordinate frame.

Job directory (--output): config.json, state.json, edited/ (newest edited image per view), checkpoints/,
history/ (renders of a few views every --history-every steps: pick the iteration you like), exports/
(point_cloud.ply, mesh.ply|obj), manifest.json. The input scene is never modified.

Interrupt with Ctrl-C: the job writes a checkpoint and stops. Run the same command again to resume.
"""

EPILOG = """\
examples:
  python -m backend edit --data scenes/bear --prompt "turn the bear into a polar bear" --output jobs/polar
  python -m backend edit --data scenes/bear --output jobs/polar            # resume an interrupted job
  python -m backend edit --data scenes/toy --prompt "make it blue" --output /tmp/job \\
      --editor tiny --tiny-nerf --reconstruction-steps 100 --steps 100 --no-lpips --device cpu   # smoke test

weights:
  The editor (default timbrooks/instruct-pix2pix) is downloaded by Hugging Face on first use; offline, pass a local
  diffusers folder with --editor PATH. The LPIPS loss needs torchvision's AlexNet weights, fetched on first use into
  $TORCH_HOME/hub/checkpoints; offline, run once with internet access, copy the file there, or use --no-lpips.

exit codes:
  0 done, 1 failed, 2 bad arguments, 3 bad scene (the message names the field or file),
  4 model weights missing (the message says how to get them), 130 cancelled (resumable).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend edit", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d_nerf, d_update, d_output = NerfConfig(), DatasetUpdateConfig(), OutputConfig()
    job = parser.add_argument_group("job")
    job.add_argument("--data", required=True, type=Path, help="scene folder holding transforms.json and its images")
    job.add_argument("--prompt", help="the editing instruction (required for a new job; a resumed job keeps its own)")
    job.add_argument("--output", required=True, type=Path, help="job directory (created; an existing one is resumed)")
    job.add_argument("--editor", default=EditorConfig().source,
                     help="tiny | full-random | Hugging Face model id | local diffusers folder (default: %(default)s)")
    job.add_argument("--editor-max-side", type=int, default=EditorConfig().max_side,
                     help="longest side the editor works at; larger views are resized for editing and back "
                          "(default: %(default)s)")
    job.add_argument("--memory-mode", choices=["in2n", "in2n-small", "in2n-tiny"], default="in2n",
                     help="in2n: fp32 editor + LPIPS; in2n-small: fp16 editor with CPU offload + LPIPS; "
                          "in2n-tiny: fp16 editor, no LPIPS (default: %(default)s)")
    job.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    job.add_argument("--checkpoint", type=Path, help="trained nerfacto checkpoint of the original scene: skips "
                                                     "reconstruction (must use the same nerfacto settings)")
    nerf = parser.add_argument_group("NeRF")
    nerf.add_argument("--reconstruction-steps", type=int, default=d_nerf.reconstruction_steps,
                      help="NeRF steps on the original images before editing (default: %(default)s)")
    nerf.add_argument("--no-lpips", action="store_true", help="train without the LPIPS loss (no AlexNet weights)")
    nerf.add_argument("--rays-per-batch", type=int, help=f"rays per NeRF step (default: {d_nerf.rays_per_batch})")
    nerf.add_argument("--tiny-nerf", action="store_true",
                      help="a very small nerfacto that trains on a CPU (for trying the pipeline, not for quality)")
    update = parser.add_argument_group("Iterative Dataset Update")
    update.add_argument("--steps", type=int, default=d_update.edit_steps,
                        help="NeRF steps of the editing phase (default: %(default)s)")
    update.add_argument("--edit-rate", type=int, default=d_update.edit_rate,
                        help="edit views every N NeRF steps (default: %(default)s)")
    update.add_argument("--edit-count", type=int, default=d_update.edit_count,
                        help="views edited each time (default: %(default)s)")
    update.add_argument("--t-min", type=float, default=d_update.t_min, help="lowest noise level (default: %(default)s)")
    update.add_argument("--t-max", type=float, default=d_update.t_max, help="highest noise level (default: %(default)s)")
    update.add_argument("--diffusion-steps", type=int, default=d_update.diffusion_steps,
                        help="DDIM steps of the full schedule (default: %(default)s)")
    update.add_argument("--guidance-scale", type=float, default=d_update.guidance_scale,
                        help="text guidance (default: %(default)s)")
    update.add_argument("--image-guidance-scale", type=float, default=d_update.image_guidance_scale,
                        help="image guidance (default: %(default)s)")
    update.add_argument("--seed", type=int, default=0, help="seed of view order, noise and NeRF (default: 0)")
    output = parser.add_argument_group("outputs")
    output.add_argument("--checkpoint-every", type=int, default=d_output.checkpoint_every,
                        help="checkpoint every N steps (default: %(default)s)")
    output.add_argument("--history-every", type=int, default=d_output.history_every,
                        help="render the history views every N editing steps, 0 = never (default: %(default)s)")
    output.add_argument("--export-points", type=int, default=d_output.export_num_points,
                        help="rays shot for the point cloud (default: %(default)s)")
    output.add_argument("--mesh-format", choices=["ply", "obj"], default=d_output.mesh_format,
                        help="mesh file format (default: %(default)s)")
    output.add_argument("--no-geometry", action="store_true",
                        help="skip the point cloud and mesh export (edited images, checkpoints and history only)")
    output.add_argument("--quiet", action="store_true", help="no progress bar, only the final summary")
    return parser


def config_from_args(args: argparse.Namespace) -> EditJobConfig:
    if args.tiny_nerf:  # LPIPS needs 32x32 patches; the tiny preset samples single pixels only without it
        nerf = tiny_nerf_config(use_lpips=not args.no_lpips, patch_size=1 if args.no_lpips else 32)
    else:
        nerf = NerfConfig(use_lpips=not args.no_lpips)
    nerf.reconstruction_steps = args.reconstruction_steps
    nerf.seed = args.seed
    if args.rays_per_batch is not None:
        nerf.rays_per_batch = args.rays_per_batch
    return EditJobConfig(
        prompt=args.prompt or "",
        memory_mode=args.memory_mode,
        device=args.device,
        nerf=nerf,
        update=DatasetUpdateConfig(
            edit_steps=args.steps, edit_rate=args.edit_rate, edit_count=args.edit_count, t_min=args.t_min,
            t_max=args.t_max, diffusion_steps=args.diffusion_steps, guidance_scale=args.guidance_scale,
            image_guidance_scale=args.image_guidance_scale, seed=args.seed),
        editor=EditorConfig(source=args.editor, max_side=args.editor_max_side),
        output=OutputConfig(checkpoint_every=args.checkpoint_every, history_every=args.history_every,
                            export_num_points=args.export_points, mesh_format=args.mesh_format,
                            export_geometry=not args.no_geometry),
    )


class ProgressBar:
    """One tqdm bar per phase: step / total, losses and ETA."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.phase = ""

    def progress(self, progress: Any) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is None or progress.phase != self.phase:
            self.close()
            self.phase = progress.phase
            unit = "ray" if progress.phase == "exporting" else "step"  # the export counts rays shot of its budget
            self.bar = tqdm(total=progress.phase_total, desc=progress.phase, unit=unit, unit_scale=unit == "ray",
                            file=sys.stderr, dynamic_ncols=True)
        self.bar.n = progress.phase_step
        if progress.phase == "exporting":
            shown = {"points": str(progress.points_found)}
        else:
            shown = {k: f"{v:.4f}" for k, v in progress.losses.items()
                     if k in ("loss", "rgb_loss", "lpips_loss", "psnr")}
            shown["edits"] = str(progress.edits_done)
        self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()

    def log(self, line: str) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    def state(self, state: str, detail: str) -> None:
        if state in ("exporting", "done", "cancelled", "failed"):
            self.close()
        self.log(f"[{state}] {detail}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def exit_code_for(kind: str | None) -> int:
    if kind == "SceneError":
        return EXIT_BAD_SCENE
    if kind in ("LpipsWeightsMissing", "EditorWeightsMissing"):
        return EXIT_MISSING_WEIGHTS
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    resuming = (args.output / "config.json").is_file()
    if not resuming and not args.prompt:
        parser.print_usage(sys.stderr)
        print("error: --prompt is required for a new job", file=sys.stderr)
        return EXIT_USAGE
    # Deprecation notices from torch / nerfstudio internals are not actionable for a user and break the progress bar.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"nerfstudio\.")
    # nerfstudio sizes its (unused: all images are cached) loader workers for a big machine.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    from backend.engine import EditEngine, JobCallbacks  # torch and nerfstudio load only now (fast --help)

    bar = ProgressBar(args.quiet)
    callbacks = JobCallbacks(on_state=bar.state, on_progress=bar.progress, on_log=bar.log)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl-C: stop right now
        bar.log("stopping after the current step (checkpoint first); Ctrl-C again to abort at once")
        stop.set()

    config = config_from_args(args)
    try:
        validate_config(config, "options")  # the same rules as the server's: ranges, finite numbers, devices
    except ValidationError as error:
        parser.print_usage(sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        engine = EditEngine(config, nerf_checkpoint=args.checkpoint)
        result = engine.run(args.data, args.output, callbacks, stop)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if result.status == "done":
        print(f"done: {result.steps} NeRF steps, {result.edits_done} edits\n  edited images: {args.output / 'edited'}")
        if result.mesh is not None:
            print(f"  point cloud: {result.point_cloud}\n  mesh: {result.mesh}")
        elif not args.no_geometry:
            print(f"  no geometry exported: {result.geometry_error}", file=sys.stderr)
        print(f"  manifest: {result.manifest}")
        return EXIT_OK
    if result.status == "cancelled":
        print(f"cancelled at step {result.steps}; run the same command again to resume", file=sys.stderr)
        return EXIT_CANCELLED
    print(f"error ({result.error_kind}): {result.error}", file=sys.stderr)
    return exit_code_for(result.error_kind)
