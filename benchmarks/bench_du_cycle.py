"""Time one Iterative Dataset Update cycle, split into render / edit / NeRF steps; prints one JSON object.

A cycle is what happens every ``edit_every_n_steps`` NeRF steps: render one training view, edit it, then ``edit_every_n_steps`` NeRF
steps. CPU default (tiny editor, tiny NeRF, 32 px)::

    python -m benchmarks.bench_du_cycle

On a GPU with the full-size InstructPix2Pix architecture (random weights) and the real nerfacto settings::

    python -m benchmarks.bench_du_cycle --device cuda --editor full-random --image-size 512 --full-nerf --no-lpips

(``--full-nerf`` with LPIPS needs torchvision's AlexNet weights in $TORCH_HOME; offline, add ``--no-lpips``.)

Timings are synchronised (``torch.cuda.synchronize``) and the median of ``--cycles`` cycles after ``--warmup``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, function):
    synchronize(device)
    started = time.perf_counter()
    value = function()
    synchronize(device)
    return time.perf_counter() - started, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--editor", default="tiny", help="tiny | full-random | HF id | folder")
    parser.add_argument("--image-size", type=int, default=32, help="side of the square views")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--full-nerf", action="store_true", help="real nerfacto settings instead of the tiny preset")
    parser.add_argument("--no-lpips", action="store_true", help="(full nerf) without LPIPS; needs no AlexNet weights")
    parser.add_argument("--memory-mode", default="in2n", choices=("in2n", "in2n-small", "in2n-tiny"),
                        help="in2n: fp32 editor; in2n-small: fp16 + CPU offload; in2n-tiny: that without LPIPS")
    parser.add_argument("--edit-rate", dest="edit_every_n_steps", type=int, default=10)
    parser.add_argument("--diffusion-steps", dest="ddim_steps", type=int, default=20)
    parser.add_argument("--timestep", type=int, default=500, help="fixed noise level (steps taken scale with it)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args(argv)

    from backend.config import DatasetUpdateConfig, EditJobConfig, NerfConfig, tiny_nerf_config
    from backend.editing.loaders import load_editor
    from backend.nerf.dataset_update import DatasetUpdater, EditSchedule
    from backend.nerf.setup import build_pipeline
    from backend.nerf.trainer import NerfTrainer
    from tests.helpers.scenes import make_tiny_scene

    if args.full_nerf:
        nerf = NerfConfig(use_lpips=not args.no_lpips, implementation="auto")
    else:
        nerf = tiny_nerf_config()
    update = DatasetUpdateConfig(edit_every_n_steps=args.edit_every_n_steps, ddim_steps=args.ddim_steps,
                                 t_min=args.timestep / 1000, t_max=args.timestep / 1000)
    config = EditJobConfig(prompt="make it look like autumn", device=args.device, nerf=nerf, update=update,
                           memory_mode=args.memory_mode)
    with tempfile.TemporaryDirectory() as folder:
        scene = make_tiny_scene(Path(folder) / "scene", num_views=args.views, size=args.image_size)
        setup_seconds, (pipeline, optimizers) = timed(args.device,
                                                      lambda: build_pipeline(config, scene.path, args.device))
        trainer = NerfTrainer(pipeline, optimizers, mixed_precision=nerf.mixed_precision)
        editor_seconds, editor = timed(args.device, lambda: load_editor(
            args.editor, device=args.device, memory_mode=args.memory_mode))
        instruction = editor.encode_instruction(config.prompt)
        updater = DatasetUpdater(EditSchedule(update, args.views, editor.num_train_timesteps), editor, instruction)
        renders, edits, nerf_steps = [], [], []
        for cycle in range(args.warmup + args.cycles):
            index = updater.schedule.edits_done
            view = updater.schedule.view_for(index)
            render_seconds, _ = timed(args.device, lambda: trainer.render_view(view))
            cycle_seconds, record = timed(args.device, lambda: updater.edit_view(trainer, index))
            steps_seconds, _ = timed(args.device, lambda: [trainer.train_step() for _ in range(args.edit_every_n_steps)])
            if cycle >= args.warmup:
                renders.append(render_seconds)
                edits.append(max(cycle_seconds - render_seconds, 0.0))  # edit_view renders, then edits
                nerf_steps.append(steps_seconds / args.edit_every_n_steps)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    render, edit, step = (statistics.median(values) for values in (renders, edits, nerf_steps))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(json.dumps({
        "benchmark": "du_cycle", "device": args.device, "device_name": device_name, "editor": args.editor,
        "memory_mode": args.memory_mode, "peak_gpu_memory_gib": None if peak_gib is None else round(peak_gib, 2),
        "image_size": args.image_size, "nerf": "full" if args.full_nerf else "tiny",
        "rays_per_batch": nerf.rays_per_batch, "lpips": config.effective_use_lpips(), "edit_every_n_steps": args.edit_every_n_steps,
        "timestep": args.timestep, "ddim_steps": args.ddim_steps, "cycles": args.cycles,
        "render_s": round(render, 4), "edit_s": round(edit, 4), "nerf_step_s": round(step, 4),
        "cycle_s": round(render + edit + args.edit_every_n_steps * step, 4),
        "setup_s": round(setup_seconds, 2), "editor_load_s": round(editor_seconds, 2),
        "torch_threads": torch.get_num_threads(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
