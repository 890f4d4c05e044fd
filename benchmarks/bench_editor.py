"""Speed of the InstructPix2Pix editor: the tiny test model, one full-size UNet forward, and (GPU) full edits.

    <backend python> -m benchmarks.bench_editor                                  # CPU (~2 min on 2 cores)
    <backend python> -m benchmarks.bench_editor --device cuda --dtype float16    # GPU (< 2 min on an H100)

Prints one JSON object. Weights are random (``tiny`` / ``full-random``): the full-size numbers have the real
model's shapes and FLOPs, so they are its speed. Times are medians over ``--repeats`` runs after a warm-up run,
with CUDA synchronised around each. An edit at timestep t runs ``t // (1000 // steps) + 1`` UNet calls (SDEdit
from t down to 0), so a 20-step edit at t=999 costs 20 calls and one at t=500 costs 11.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from backend.editing.components import IP2PComponents, full_random_components, full_random_unet
from backend.editing.ip2p import InstructPix2PixEditor
from backend.editing.loaders import load_editor
from backend.editing.memory import EditorPlacement, placement_for

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def timed(function: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> dict:
    """Median / min seconds of ``function`` over ``repeats`` runs after ``warmup`` runs."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        function()
    sync()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        sync()
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 4), "min_s": round(min(seconds), 4), "runs": repeats}


def edit_runner(editor: InstructPix2PixEditor, size: int, timestep: int, steps: int) -> Callable[[], object]:
    generator = torch.Generator().manual_seed(0)
    render, original = torch.rand(2, 1, 3, size, size, generator=generator).to(editor.device)
    embeddings = editor.encode_instruction("turn the bear into a polar bear")
    return lambda: editor.edit(render, original, embeddings, timestep=timestep, guidance_scale=7.5,
                               image_guidance_scale=1.5, ddim_steps=steps,
                               generator=torch.Generator().manual_seed(0))


def unet_forward_runner(unet: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                        autocast: torch.dtype | None) -> Callable[[], object]:
    """One classifier-free-guided call: batch 3 (three branches), 8 x 64 x 64 latents (512 x 512 images)."""
    sample = torch.randn(3, 8, 64, 64, device=device, dtype=dtype)
    context = torch.randn(3, 77, 768, device=device, dtype=dtype)

    def run() -> object:
        with torch.inference_mode(), torch.autocast(device.type, dtype=autocast or dtype, enabled=autocast is not None):
            return unet(sample, 500, encoder_hidden_states=context, return_dict=False)

    return run


def tiny_edit(device: torch.device, repeats: int) -> dict:
    editor = load_editor("tiny", device=device, max_side=64)
    return {"image": "64x64", "steps": 20, "timestep": 500, "unet_calls": 500 // 50 + 1,
            **timed(edit_runner(editor, 64, 500, 20), repeats, device)}


def cpu_full_unet(repeats: int) -> dict:
    device = torch.device("cpu")
    unet = full_random_unet()
    results = {"float32": timed(unet_forward_runner(unet, device, torch.float32, None), repeats, device),
               "bfloat16_autocast": timed(unet_forward_runner(unet, device, torch.float32, torch.bfloat16), repeats,
                                          device)}
    del unet
    return results


def gpu_full(device: torch.device, dtype: torch.dtype, repeats: int, with_offload: bool) -> dict:
    results: dict = {}
    torch.cuda.reset_peak_memory_stats(device)
    components: IP2PComponents = full_random_components(device)
    editor = InstructPix2PixEditor(components, EditorPlacement(device, dtype), max_side=512)
    results["unet_forward_b3_latent64"] = timed(unet_forward_runner(components.unet, device, dtype, None), repeats,
                                                device, warmup=2)
    for timestep in (999, 500):
        results[f"edit_512_steps20_t{timestep}"] = {
            "unet_calls": timestep // 50 + 1, **timed(edit_runner(editor, 512, timestep, 20), repeats, device)}
    results["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del editor, components
    torch.cuda.empty_cache()
    if with_offload:  # in2n-small / in2n-tiny: fp16 + model CPU offload
        torch.cuda.reset_peak_memory_stats(device)
        # Built on the GPU (fast random init), then moved to the CPU by the offload placement.
        small = InstructPix2PixEditor(full_random_components(device), placement_for("in2n-small", device), max_side=512)
        results["small_mode_edit_512_steps20_t999"] = timed(edit_runner(small, 512, 999, 20), max(1, repeats // 2),
                                                            device)
        results["small_mode_peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES), help="GPU weights dtype")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default: CPU 3 for "
                        "the tiny editor and 1 for the full UNet, GPU 5)")
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size measurements")
    parser.add_argument("--skip-offload", action="store_true", help="GPU: skip the fp16 + CPU-offload edit")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report: dict = {
        "benchmark": "editor", "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
        "params": full_random_components("meta").num_parameters(),
    }
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["dtype"] = args.dtype
    report["tiny_edit"] = tiny_edit(device, args.repeats or (5 if device.type == "cuda" else 3))
    if not args.skip_full:
        if device.type == "cuda":
            report["full"] = gpu_full(device, DTYPES[args.dtype], args.repeats or 5, not args.skip_offload)
        else:
            report["full_unet_forward_b3_latent64"] = cpu_full_unet(args.repeats or 1)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
