"""How long a job will take, before it starts: measured per-device rates scaled by the job's size.

The rates come from ``benchmarks/RESULTS.md`` (the DU-cycle and editor benchmarks): on CUDA an H100 with full
nerfacto (16384 rays x 400 samples per step: 0.189 s, 0.325 s with LPIPS), a 512 px render (0.78 s) and the
full-size InstructPix2Pix (20 UNet calls at 512 px: 1.07 s); on the CPU these 2-core machines (tiny nerfacto, 256 rays
x 64 samples: 0.056 s a step; a 32 px render 0.11 s; the full-size UNet 17-55 s a call at 512 px). A job costs

    steps x rays x samples x train rate  +  edits x (pixels x samples x render rate  +  s x UNet call at its size)

It is an estimate (within a factor of about two on the measured machines), meant to tell minutes from hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend.config import EditJobConfig
from backend.editing.sizes import working_size
from protocol import format_duration


@dataclass(frozen=True)
class DeviceRates:
    """Seconds per unit of work on one kind of device."""

    train_ray_sample_s: float
    """One ray sample of a training step (forward + backward)."""
    render_ray_sample_s: float
    """One ray sample of a render (forward only)."""
    unet_call_512_s: float
    """One full-size InstructPix2Pix UNet call (3 guidance branches) at a 512 x 512 working size."""
    tiny_unet_call_s: float
    """One call of the tiny random test editor."""
    lpips_factor: float
    """How much slower a training step is with the LPIPS loss."""


MEASURED_RATES = {
    "cuda": DeviceRates(train_ray_sample_s=0.189 / (16384 * 400), render_ray_sample_s=0.78 / (512 * 512 * 400),
                        unet_call_512_s=1.07 / 20, tiny_unet_call_s=0.005, lpips_factor=0.325 / 0.189),
    "cpu": DeviceRates(train_ray_sample_s=0.056 / (256 * 64), render_ray_sample_s=0.11 / (32 * 32 * 64),
                       unet_call_512_s=25.0, tiny_unet_call_s=0.07, lpips_factor=1.7),
}
"""Measured rates by device kind (``mps`` and other accelerators are estimated as CUDA)."""


@dataclass(frozen=True)
class Estimate:
    """A job's expected duration and where the time goes."""

    device_kind: str
    reconstruction_s: float
    editing_nerf_s: float
    edits_s: float
    edits: int

    @property
    def total_s(self) -> float:
        return self.reconstruction_s + self.editing_nerf_s + self.edits_s

    def describe(self) -> str:
        return (f"about {format_duration(self.total_s)} on {self.device_kind} (reconstruction "
                f"{format_duration(self.reconstruction_s)}, editing {format_duration(self.editing_nerf_s)} of NeRF "
                f"steps + {self.edits} edits {format_duration(self.edits_s)})")


def estimate(config: EditJobConfig, num_views: int, width: int, height: int, device_kind: str) -> Estimate:
    """The expected duration of ``config`` on ``num_views`` views of ``width`` x ``height`` on ``device_kind``."""
    rates = MEASURED_RATES["cpu" if device_kind == "cpu" else "cuda"]
    nerf = config.nerf
    samples = sum(nerf.num_proposal_samples_per_ray) + nerf.num_nerf_samples_per_ray
    step_s = nerf.rays_per_batch * samples * rates.train_ray_sample_s
    if config.effective_use_lpips():
        step_s *= rates.lpips_factor
    update = config.update
    edits = math.ceil(update.total_steps / update.edit_every_n_steps) * update.images_per_edit if update.total_steps else 0
    render_s = width * height * samples * rates.render_ray_sample_s
    side_h, side_w = working_size(height, width, config.editor.max_side)
    if config.editor.source in ("tiny", "simulated"):  # the simulated editor is a cheap blend, cheaper than tiny
        call_s = rates.tiny_unet_call_s
    else:
        call_s = rates.unet_call_512_s * (side_h * side_w) / (512 * 512)
    edit_s = render_s + update.ddim_steps * call_s
    return Estimate("cpu" if device_kind == "cpu" else device_kind, nerf.reconstruction_steps * step_s,
                    update.total_steps * step_s, edits * edit_s, edits)
