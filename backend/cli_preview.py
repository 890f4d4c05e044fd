"""``python -m backend edit-preview``: try an instruction in 2D on one view, as a grid of guidance scales.

Before hours of NeRF training, see what the editor does to one view for a few text x image guidance scales (the
same edit Iterative Dataset Update makes, :mod:`backend.editing.preview_grid`), and pick the scales to pass to
``python -m backend edit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BAD_SCENE, EXIT_MISSING_WEIGHTS = 0, 1, 2, 3, 4


def scales(text: str) -> list[float]:
    """``"5,7.5,10"`` -> ``[5.0, 7.5, 10.0]``."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one scale")
    return values


def build_parser() -> argparse.ArgumentParser:
    from backend.config import EditorConfig
    from protocol import messages as m

    defaults = m.InstructionPreviewRequest(instruction="x", image=m.ImageInfo("uint8", [1, 1, 3]))
    parser = argparse.ArgumentParser(prog="python -m backend edit-preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path,
                        help="the capture (any layout `edit --data` reads) whose view is edited")
    parser.add_argument("--view", type=int, default=0, help="index of the training view to edit (default: 0)")
    parser.add_argument("--prompt", required=True, help="the editing instruction")
    parser.add_argument("--out", type=Path, default=Path("preview_grid.png"),
                        help="the grid PNG to write (default: %(default)s)")
    parser.add_argument("--guidance", type=scales, default=defaults.guidance_scales,
                        help="text guidance scales of the columns, comma-separated (default: "
                             f"{','.join(f'{s:g}' for s in defaults.guidance_scales)})")
    parser.add_argument("--image-guidance", type=scales, default=defaults.image_guidance_scales,
                        help="image guidance scales of the rows, comma-separated (default: "
                             f"{','.join(f'{s:g}' for s in defaults.image_guidance_scales)})")
    parser.add_argument("--ddim-steps", type=int, default=defaults.ddim_steps,
                        help="DDIM steps per edit (default: %(default)s)")
    parser.add_argument("--noise-level", type=float, default=defaults.noise_level,
                        help="fraction of the diffusion schedule the view is noised to: the schedule's t_max, the "
                             "strongest edit of Iterative DU (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise, the same in every cell (default: 0)")
    parser.add_argument("--editor", default=EditorConfig().source,
                        help="tiny | full-random | Hugging Face model id | local diffusers folder | simulated "
                             "(default: %(default)s)")
    parser.add_argument("--editor-max-side", type=int, default=EditorConfig().max_side,
                        help="longest side the editor works at (default: %(default)s)")
    parser.add_argument("--memory-mode", choices=["in2n", "in2n-small", "in2n-tiny"], default="in2n",
                        help="editor precision and placement, as for `edit` (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from protocol import ValidationError
    from protocol import messages as m

    try:  # the server's rules for the same settings
        m.InstructionPreviewRequest(instruction=args.prompt, image=m.ImageInfo("uint8", [1, 1, 3]),
                                    guidance_scales=args.guidance, image_guidance_scales=args.image_guidance,
                                    ddim_steps=args.ddim_steps, noise_level=args.noise_level, seed=args.seed
                                    ).validate("options")
    except ValidationError as error:
        parser.print_usage(sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    import numpy as np
    from PIL import Image

    from backend import atomic
    from backend.cli_output import quiet_libraries
    from backend.editing.loaders import EditorWeightsMissing, load_editor
    from backend.editing.memory import resolve_device
    from backend.editing.preview_grid import edit_cells, grid_image
    from backend.editing.simulated import SimulatedTargetsMissing
    from backend.scene import SceneError, load_scene

    quiet_libraries()
    started = time.perf_counter()
    try:
        scene = load_scene(args.data)
        if not 0 <= args.view < scene.num_views:
            raise SceneError("--view", f"the capture has training views 0..{scene.num_views - 1}, not {args.view}")
        image = np.asarray(Image.open(scene.frames[args.view].image_path).convert("RGB"))
        editor = load_editor(args.editor, device=resolve_device(args.device), memory_mode=args.memory_mode,
                             max_side=args.editor_max_side, scene=scene)
    except (SceneError, SimulatedTargetsMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_SCENE
    except EditorWeightsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MISSING_WEIGHTS
    loaded = time.perf_counter()
    count = len(args.guidance) * len(args.image_guidance)

    def report(cell) -> None:  # type: ignore[no-untyped-def]
        print(f"cell {cell.index + 1}/{count}: text {cell.guidance_scale:g}, image {cell.image_guidance_scale:g} "
              f"({cell.seconds:.2f} s)", file=sys.stderr)

    cells = edit_cells(editor, image, args.prompt, args.guidance, args.image_guidance, ddim_steps=args.ddim_steps,
                       noise_level=args.noise_level, seed=args.seed, on_cell=report)
    atomic.write_png(args.out, grid_image(cells, len(args.guidance)))
    simulated = " (SIMULATED editor: not InstructPix2Pix)" if args.editor == "simulated" else ""
    print(f"wrote {args.out}: {count} edits of view {args.view}{simulated}; editor ready in {loaded - started:.1f} s, "
          f"first cell after {loaded - started + cells[0].seconds:.1f} s, all in {time.perf_counter() - started:.1f} s"
          "\ncolumns: text guidance " + ", ".join(f"{s:g}" for s in args.guidance)
          + "; rows: image guidance " + ", ".join(f"{s:g}" for s in args.image_guidance))
    return EXIT_OK
