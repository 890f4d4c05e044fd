"""``python -m demo`` (run by ``python3 build.py demo``): the whole product, headless, in a few minutes.

Builds a procedural Blender scene (coloured objects on a checkered ground), renders training views with Cycles,
installs the in2n-blender extension and uses its own buttons: Start local backend, Edit (render, upload, Iterative
Dataset Update with InstructPix2Pix), live progress and previews, Import result. Writes to the output folder:
the .blend, a before/after contact sheet, a turntable of the imported result (GIF + strip), the loss plot and
summary.json, and prints where they are.

Editor: real InstructPix2Pix when its weights are on this machine (``--editor PATH`` or the Hugging Face cache) and
the backend has a GPU; otherwise the SIMULATED editor (not InstructPix2Pix, and the demo says so everywhere): Blender
renders the intended edit (the yellow sphere as blue glass) from every training camera, the add-on uploads these
targets with the views, and the simulated editor returns view-inconsistent blends toward them, which Iterative Dataset
Update turns into one consistent 3D edit. ``--editor tiny`` uses the tiny RANDOM InstructPix2Pix (NOT meaningful).
The backend runs with ``$IN2N_BACKEND_PYTHON`` (build.py sets it to the backend environment).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from demo.config import DemoConfig, clean_outputs
from demo.editor_choice import EditorChoiceError, choose_editor

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def parse_args(argv: list[str] | None) -> DemoConfig:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=defaults.out_dir, help="output folder (default: %(default)s)")
    parser.add_argument("--instruction", default=defaults.instruction, help="edit instruction (default: %(default)r)")
    parser.add_argument("--editor", default=None,
                        help="simulated, tiny, or a local diffusers InstructPix2Pix folder (default: the Hugging Face "
                             "cache's timbrooks/instruct-pix2pix when present, else simulated)")
    parser.add_argument("--preset", choices=("auto", "cpu", "paper"), default="auto",
                        help="cpu: tiny models, minutes on a CPU; paper: the paper's schedule on a GPU; auto: paper "
                             "with real weights on a GPU backend, else cpu (default)")
    parser.add_argument("--views", type=int, help="training views (preset: cpu 10, paper 12)")
    parser.add_argument("--size", type=int, help="render size in pixels, square (preset: cpu 96, paper 512)")
    parser.add_argument("--samples", type=int, help="Cycles samples of the training renders")
    parser.add_argument("--reconstruction-steps", type=int, help="nerfacto steps before editing")
    parser.add_argument("--total-steps", "--edit-steps", type=int, help="Iterative Dataset Update steps")
    parser.add_argument("--scope", choices=("selected", "scene"), default=defaults.scope,
                        help="selected: edit the sphere alone (its mask and depth from Blender) and import it in place "
                             "of the original; scene: edit and import the whole scene (default: %(default)s)")
    parser.add_argument("--turntable-frames", type=int, default=defaults.turntable_frames)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="Cycles threads (0: automatic)")
    parser.add_argument("--job-timeout", type=float, default=defaults.job_timeout_s,
                        help="seconds the edit job may take (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.instruction.strip():
        parser.error("--instruction must not be empty")
    for name in ("views", "size", "samples", "reconstruction_steps", "total_steps"):
        value = getattr(args, name)
        if value is not None and value < (1 if name != "reconstruction_steps" else 0):
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    return DemoConfig(out_dir=args.out, instruction=args.instruction, editor=args.editor, preset=args.preset,
                      views=args.views, size=args.size, samples=args.samples,
                      reconstruction_steps=args.reconstruction_steps, total_steps=args.total_steps,
                      turntable_frames=args.turntable_frames, seed=args.seed, threads=args.threads,
                      job_timeout_s=args.job_timeout, scope=args.scope)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        choose_editor(config.editor)  # a bad --editor is a usage error, reported before anything starts
    except EditorChoiceError as exc:
        print(f"[demo] {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    backend_python = os.environ.get("IN2N_BACKEND_PYTHON") or sys.executable
    out = config.out_dir.resolve()
    clean_outputs(out)
    # Before bpy is imported: Blender's user folder (preferences, installed extension, the add-on's scratch files
    # and the backend log) lives in the output folder, never in the user's own Blender configuration.
    os.environ["BLENDER_USER_RESOURCES"] = str(out / "work" / "blender_user")
    from demo.addon_driver import DemoError
    from demo.blender_process import STOP_REQUESTED
    from demo.run import print_outputs, run_demo

    # SIGTERM (a CI timeout, kill) and Ctrl-C stop the demo at its next check point, and the backend it started too
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: STOP_REQUESTED.set())
    try:
        summary = run_demo(config, backend_python)
    except KeyboardInterrupt:
        print("[demo] interrupted; the backend it started was stopped", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except (DemoError, ValueError, OSError) as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print_outputs(summary, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
