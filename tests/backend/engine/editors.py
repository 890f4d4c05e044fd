"""Test-only editors implementing backend.editing.base.ImageEditor, to make the loop's behaviour observable.

They are not diffusion models: ``ChannelSwapEditor`` returns the original image with its red and blue channels
swapped (a consistent, view-independent "edit" the NeRF can converge to) and records every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class EditCall:
    render: Tensor
    original: Tensor
    instruction: object
    timestep: int
    guidance_scale: float
    image_guidance_scale: float
    ddim_steps: int


@dataclass
class ChannelSwapEditor:
    num_train_timesteps: int = 1000
    calls: list[EditCall] = field(default_factory=list)
    encoded: list[str] = field(default_factory=list)

    def encode_instruction(self, instruction: str) -> object:
        self.encoded.append(instruction)
        return ("embedding", instruction)

    def edit(self, render: Tensor, original: Tensor, instruction: object, *, timestep: int, guidance_scale: float,
             image_guidance_scale: float, ddim_steps: int, generator: torch.Generator | None = None
             ) -> Tensor:
        self.calls.append(EditCall(render.detach().cpu().clone(), original.detach().cpu().clone(), instruction,
                                   timestep, guidance_scale, image_guidance_scale, ddim_steps))
        return original.flip(1).clone()  # B 3 H W: RGB -> BGR
