"""``python -m backend edit``: edit a nerfstudio scene with a text instruction, headless (no Blender needed)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from backend.cli_output import ProgressBar, quiet_libraries, version_line
from backend.config import (
    DatasetUpdateConfig,
    EditJobConfig,
    EditorConfig,
    NerfConfig,
    OutputConfig,
    StartConfig,
    preset_nerf,
    validate_config,
)
from protocol import ValidationError
from protocol.messages import PRESETS

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
snapshots/ (the NeRF every --snapshot-every editing steps, after reconstruction and at the end: weights, renders of
a few views, and the final one's point_cloud.ply and mesh.ply|obj), edited_capture/, manifest.json. The input scene
is never modified.

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
    job.add_argument("--data", required=True, type=Path,
                     help="the capture: a folder (or its camera file) in one of the layouts nerfstudio "
                          "(transforms.json), NeRF-synthetic / BlenderNeRF (transforms_train.json), instant-ngp, "
                          "COLMAP (sparse/0 + images/); the edit is written back in the same layout")
    job.add_argument("--prompt", help="the editing instruction (required for a new job; a resumed job keeps its own) (default: none)")
    job.add_argument("--output", required=True, type=Path, help="job directory (created; an existing one is resumed)")
    job.add_argument("--editor", default=EditorConfig().source,
                     help="tiny | full-random | Hugging Face model id | local diffusers folder | simulated (NOT "
                          "InstructPix2Pix: blends toward each frame's target_file_path image; demos without "
                          "weights) (default: %(default)s)")
    job.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="; ".join(f"{name}: {p.description}" for name, p in sorted(PRESETS.items()))
                          + ". Options given explicitly override the preset (default: none, i.e. the paper's "
                            "settings below)")
    job.add_argument("--editor-max-side", type=int, default=None,
                     help="longest side the editor works at in pixels; larger views are resized for editing and "
                          f"back (default: {EditorConfig().max_side})")
    job.add_argument("--memory-mode", choices=["in2n", "in2n-small", "in2n-tiny"], default=None,
                     help="in2n: fp32 editor (fp16 autocast on CUDA) + LPIPS; in2n-small: fp16 editor with CPU "
                          "offload + LPIPS; in2n-tiny: fp16 editor, no LPIPS (default: in2n)")
    job.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    job.add_argument("--checkpoint", type=Path,
                     help="trained nerfacto checkpoint of this scene, or a snapshot folder of an earlier job "
                          "(<job>/snapshots/step-N): skips reconstruction (must use the same nerfacto settings) "
                          "(default: none: reconstruct)")
    job.add_argument("--start-images", choices=["original", "renders"], default="original",
                     help="the training images editing starts from: the capture's, or the --checkpoint NeRF's renders "
                          "of every view (a chained edit from a snapshot) (default: %(default)s)")
    job.add_argument("--condition", choices=["original", "renders"], default="original",
                     help="the editor's image condition: the capture's images (the paper's) or the --checkpoint "
                          "NeRF's renders (default: %(default)s)")
    job.add_argument("--more-steps", type=int, default=0,
                     help="continue a stopped or finished job in --output for this many more editing steps "
                          "(default: 0: finish the steps it planned)")
    nerf = parser.add_argument_group("NeRF")
    nerf.add_argument("--reconstruction-steps", type=int, default=None,
                      help=f"NeRF steps on the original images before editing (default: {d_nerf.reconstruction_steps})")
    nerf.add_argument("--no-lpips", action="store_true", help="train without the LPIPS loss (no AlexNet weights)")
    nerf.add_argument("--rays-per-batch", type=int, help=f"rays per NeRF step (default: {d_nerf.rays_per_batch})")
    nerf.add_argument("--tiny-nerf", action="store_true",
                      help="a very small nerfacto that trains on a CPU (for trying the pipeline, not for quality)")
    update = parser.add_argument_group("Iterative Dataset Update")
    update.add_argument("--total-steps", "--steps", type=int, default=None,
                        help=f"NeRF steps of the editing phase (default: {d_update.total_steps})")
    update.add_argument("--edit-every-n-steps", "--edit-rate", type=int, default=None,
                        help=f"edit views every N NeRF steps (default: {d_update.edit_every_n_steps})")
    update.add_argument("--images-per-edit", "--edit-count", type=int, default=d_update.images_per_edit,
                        help="views edited each time (default: %(default)s)")
    update.add_argument("--t-min", type=float, default=d_update.t_min, help="lowest noise level (default: %(default)s)")
    update.add_argument("--t-max", type=float, default=d_update.t_max, help="highest noise level (default: %(default)s)")
    update.add_argument("--ddim-steps", "--diffusion-steps", type=int, default=None,
                        help="DDIM steps s per edit (UNet calls), spread between the drawn noise level and 0 "
                             f"(default: {d_update.ddim_steps})")
    update.add_argument("--guidance-scale", type=float, default=d_update.guidance_scale,
                        help="text guidance (default: %(default)s)")
    update.add_argument("--image-guidance-scale", type=float, default=d_update.image_guidance_scale,
                        help="image guidance (default: %(default)s)")
    update.add_argument("--seed", type=int, default=0, help="seed of view order, noise and NeRF (default: 0)")
    output = parser.add_argument_group("outputs")
    output.add_argument("--checkpoint-every", type=int, default=d_output.checkpoint_every,
                        help="checkpoint every N steps (default: %(default)s)")
    output.add_argument("--snapshot-every", "--history-every", type=int, default=d_output.snapshot_every,
                        help="keep a NeRF snapshot (weights, renders, losses) every N editing steps; one is always "
                             "kept after reconstruction and at the end, 0 = only those (default: %(default)s)")
    output.add_argument("--snapshot-views", type=int, default=d_output.snapshot_views,
                        help="training views each snapshot renders (default: %(default)s)")
    output.add_argument("--export-points", type=int, default=None,
                        help=f"points of the exported cloud (default: the preset's, else {d_output.export_num_points})")
    output.add_argument("--bake-resolution", type=int, default=d_output.bake_resolution,
                        help="side in pixels of the texture baked onto each of the capture's surfaces "
                             "(surfaces.json, written by the add-on) (default: %(default)s)")
    output.add_argument("--mesh-format", choices=["ply", "obj"], default=d_output.mesh_format,
                        help="mesh file format (default: %(default)s)")
    output.add_argument("--no-geometry", action="store_true",
                        help="skip the point cloud and mesh export (edited images, checkpoints and snapshots only)")
    output.add_argument("--quiet", action="store_true",
                        help="no progress display: only warnings and the final summary (same as --log-level warning)")
    output.add_argument("--log-level", choices=("debug", "info", "warning"), default="info",
                        help="least severe messages shown; debug adds tracebacks of expected failures (everything is "
                             "always written to <output>/edit.log) (default: %(default)s)")
    return parser


def checkpoint_file(path: Path) -> Path:
    """``--checkpoint``: a checkpoint file, or a snapshot folder (its ``model.ckpt``)."""
    return path / "model.ckpt" if path.is_dir() else path


def config_from_args(args: argparse.Namespace) -> EditJobConfig:
    """Explicit options first, then the preset's settings (``--preset``), then the defaults (the paper's)."""
    preset = PRESETS[args.preset] if args.preset else None

    def chosen(value: Any, from_preset: Any, default: Any) -> Any:
        return value if value is not None else from_preset if preset is not None else default

    schedule = preset.schedule if preset else None
    small = args.tiny_nerf or (preset is not None and preset.nerf_size == "small")
    nerf = preset_nerf(PRESETS["quick"] if small else preset, use_lpips=not args.no_lpips)
    d_update = DatasetUpdateConfig()
    nerf.reconstruction_steps = chosen(args.reconstruction_steps, schedule and schedule.reconstruction_steps,
                                       NerfConfig().reconstruction_steps)
    nerf.seed = args.seed
    if args.rays_per_batch is not None:
        nerf.rays_per_batch = args.rays_per_batch
    return EditJobConfig(
        start=StartConfig(checkpoint=str(checkpoint_file(args.checkpoint)) if args.checkpoint else "",
                          dataset=args.start_images, condition=args.condition),
        prompt=args.prompt or "",
        memory_mode=chosen(args.memory_mode, preset and preset.memory_mode, "in2n"),
        device=args.device,
        nerf=nerf,
        update=DatasetUpdateConfig(
            total_steps=chosen(args.total_steps, schedule and schedule.total_steps, d_update.total_steps),
            edit_every_n_steps=chosen(args.edit_every_n_steps, schedule and schedule.edit_every_n_steps, d_update.edit_every_n_steps),
            images_per_edit=args.images_per_edit, t_min=args.t_min, t_max=args.t_max,
            ddim_steps=chosen(args.ddim_steps, schedule and schedule.ddim_steps, d_update.ddim_steps),
            guidance_scale=args.guidance_scale, image_guidance_scale=args.image_guidance_scale, seed=args.seed),
        editor=EditorConfig(source=args.editor,
                            max_side=chosen(args.editor_max_side, preset and preset.editor_max_side,
                                            EditorConfig().max_side)),
        output=OutputConfig(checkpoint_every=args.checkpoint_every, snapshot_every=args.snapshot_every,
                            snapshot_views=args.snapshot_views,
                            export_num_points=chosen(args.export_points, preset and preset.export_points,
                                                     OutputConfig().export_num_points),
                            bake_resolution=args.bake_resolution, mesh_format=args.mesh_format,
                            export_geometry=not args.no_geometry),
    )


SCHEDULE_OPTIONS = ("reconstruction_steps", "total_steps", "edit_every_n_steps", "ddim_steps", "memory_mode", "editor_max_side")


def announce_estimate(config: EditJobConfig, args: argparse.Namespace, bar: ProgressBar) -> None:
    """Say how long the job will take on this device before it starts (the cost model of backend.cost_model), and
    when that is more than an hour, which preset fits."""
    import torch

    from backend.cost_model import estimate
    from backend.editing.memory import resolve_device
    from backend.scene import SceneError, load_scene
    from protocol import format_duration

    try:
        scene = load_scene(args.data)
    except SceneError:
        return  # the engine reports it, naming the field or file
    kind = torch.device(resolve_device(config.device)).type
    frame = scene.frames[0]
    held_out = len(scene.capture.frames) - scene.num_views
    bar.log(f"capture: {scene.layout} layout, {scene.num_views} views of {frame.width}x{frame.height}"
            + (f" (+{held_out} held-out views, not edited)" if held_out else ""))
    guess = estimate(config, scene.num_views, frame.width, frame.height, kind)
    bar.log(f"estimate: {guess.describe()}")
    if guess.total_s > 3600 and args.preset != "quick":
        quick_args = argparse.Namespace(**{**vars(args), "preset": "quick", **dict.fromkeys(SCHEDULE_OPTIONS)})
        quick = estimate(config_from_args(quick_args), scene.num_views, frame.width, frame.height, kind)
        bar.log(f"warning: this job would take {format_duration(guess.total_s)} on {kind}; --preset quick fits this "
                f"device (about {format_duration(quick.total_s)}): {PRESETS['quick'].description}")


def exit_code_for(kind: str | None) -> int:
    if kind in ("SceneError", "SimulatedTargetsMissing"):
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
    if args.more_steps and not resuming:
        parser.print_usage(sys.stderr)
        print(f"error: --more-steps continues a job, and {args.output} holds none", file=sys.stderr)
        return EXIT_USAGE
    if args.checkpoint and not checkpoint_file(args.checkpoint).is_file():
        parser.print_usage(sys.stderr)
        print(f"error: --checkpoint {args.checkpoint}: no checkpoint file (or snapshot folder with model.ckpt)",
              file=sys.stderr)
        return EXIT_USAGE
    if args.more_steps:
        from backend.job.jobdir import JobDir, JobDirError

        try:
            total = JobDir(args.output).extend(args.more_steps)
        except JobDirError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(f"continuing {args.output} for {args.more_steps} more editing steps ({total} in all)",
              file=sys.stderr)
    # Deprecation notices from torch / nerfstudio internals are not actionable for a user and break the progress bar.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"nerfstudio\.")
    # nerfstudio sizes its (unused: all images are cached) loader workers for a big machine.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    from backend.engine import EditEngine  # torch and nerfstudio load only now (fast --help)
    from backend.job.types import JobCallbacks

    quiet_libraries()
    bar = ProgressBar("warning" if args.quiet else args.log_level, args.output / "edit.log")
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
    if not resuming:
        announce_estimate(config, args, bar)
    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        engine = EditEngine(config)
        result = engine.run(args.data, args.output, callbacks, stop)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if result.status == "done":
        print(f"done: {result.steps} NeRF steps, {result.edits_done} edits\n  edited images: {args.output / 'edited'}")
        if result.mesh is not None:
            print(f"  point cloud: {result.point_cloud}\n  mesh: {result.mesh}")
        elif not args.no_geometry:
            print("  no point cloud or mesh: see the warning above", file=sys.stderr)
        print(f"  manifest: {result.manifest}")
        return EXIT_OK
    if result.status == "cancelled":
        print(f"cancelled at step {result.steps}; run the same command again to resume", file=sys.stderr)
        return EXIT_CANCELLED
    if result.expected:  # the message says what is wrong and what to do; the traceback is in the log
        print(f"error: {result.error}", file=sys.stderr)
    else:
        print(f"error ({result.error_kind}): {result.error}\n  log: {bar.log_path}\n  {version_line()}\n"
              "  (a bug: please report it with the log)", file=sys.stderr)
    return exit_code_for(result.error_kind)
