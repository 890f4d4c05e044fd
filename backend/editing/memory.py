"""Precision and placement of the editor's networks: the editor half of in2n's ``in2n`` / ``in2n-small`` /
``in2n-tiny`` methods (the NeRF half, dropping LPIPS for ``in2n-tiny``, is the job's business)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from backend.editing.components import IP2PComponents
from protocol.messages import MemoryMode

logger = logging.getLogger(__name__)

#: The memory modes are the protocol's (``protocol.messages.MemoryMode``), as in the reference implementation:
#: ``in2n``: fp32 weights; on CUDA the UNet runs under fp16 autocast, as the reference's ``in2n`` does inside
#: nerfstudio's mixed-precision trainer. ``in2n-small``: fp16 weights + model CPU offload. ``in2n-tiny``: as
#: ``in2n-small`` (the NeRF side additionally drops LPIPS). On the CPU every mode computes in fp32.
MEMORY_MODES = ("in2n", "in2n-small", "in2n-tiny")


@dataclass(frozen=True)
class EditorPlacement:
    """How the editor's networks are stored and run."""

    device: torch.device
    """Where the editor computes (the offload target when ``cpu_offload`` is on)."""
    dtype: torch.dtype
    """Dtype of the networks' weights and of the latents."""
    cpu_offload: bool = False
    """Keep each network on the CPU and move it to ``device`` only while it runs (accelerate hooks, as diffusers'
    ``enable_model_cpu_offload``): peak GPU memory is the largest network (the UNet), not all three."""
    autocast: bool = False
    """Run the UNet under fp16 autocast (fp32 weights, fp16 matrix products), as the reference's full-precision
    ``in2n`` computes inside nerfstudio's CUDA autocast: faster than true fp32 and what the paper's results used."""


def resolve_device(device: str) -> str:
    """``auto``: CUDA when there is a device, else the CPU; anything else as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def placement_for(mode: MemoryMode | str, device: torch.device | str) -> EditorPlacement:
    """The placement of a memory mode on a device; fp16 is only used on CUDA (fp16 convolutions on the CPU are
    unsupported or very slow), so on the CPU every mode runs fp32 without offload, with a logged note."""
    device = torch.device(device)
    if mode == "in2n":
        return EditorPlacement(device, torch.float32, autocast=device.type == "cuda")
    if mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, got {mode!r}")
    if device.type != "cuda":
        logger.info("editor memory mode %r: fp16 and CPU offload need CUDA; running fp32 on %s", mode, device)
        return EditorPlacement(device, torch.float32)
    return EditorPlacement(device, torch.float16, cpu_offload=True)


def place_components(components: IP2PComponents, placement: EditorPlacement) -> None:
    """Cast the networks to ``placement.dtype`` and move them to its device, or install CPU-offload hooks."""
    # the order they run in; typed as plain modules (the transformers/diffusers ``to`` overloads confuse mypy)
    networks: tuple[torch.nn.Module, ...] = (components.text_encoder, components.unet, components.vae)
    for network in networks:
        network.requires_grad_(False)
        if next(network.parameters()).dtype != placement.dtype:  # casting to the same dtype makes diffusers warn for nothing
            network.to(dtype=placement.dtype)
    if not placement.cpu_offload:
        for network in networks:
            network.to(placement.device)
        return
    from accelerate import cpu_offload_with_hook

    previous_hook = None
    for network in networks:
        network.to("cpu")
        # Each network's hook offloads the previous one when it is called (diffusers' model CPU offload chain).
        _, previous_hook = cpu_offload_with_hook(network, placement.device, prev_module_hook=previous_hook)
