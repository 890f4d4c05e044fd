"""The interface every 2D editor implements: InstructPix2Pix, and the simulated editor of the consistency benchmark.

Iterative Dataset Update (Haque et al., 2023) only needs one operation from its editor: given the NeRF's current
render of a training view, the *original* captured image of that view and a noise level, return an edited image.
The loop (not the editor) draws the noise level, so that it can be logged and tested.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


class EditStopped(Exception):
    """An edit stopped between two of its DDIM steps because its editor's ``should_stop()`` said so."""


@runtime_checkable
class ImageEditor(Protocol):
    """Edits renders of a scene, conditioned on the original images and an instruction."""

    #: Length of the diffusion schedule that ``timestep`` indexes (1000 for Stable Diffusion / InstructPix2Pix).
    num_train_timesteps: int
    #: Optional (default True): whether it can edit a crop of a view (local edits give small objects a crop at the
    #: editor's full working size); an editor that must see whole views sets it False.

    def encode_instruction(self, instruction: str) -> Any:
        """Pre-compute whatever the instruction conditions on (text embeddings); called once per job."""
        ...

    def edit(
        self,
        render: Tensor,
        original: Tensor,
        instruction: Any,
        *,
        timestep: int,
        guidance_scale: float,
        image_guidance_scale: float,
        ddim_steps: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Edit a batch of views.

        Args:
            render: ``Float[Tensor, "B 3 H W"]`` in [0, 1], the current NeRF render; noised to ``timestep``.
            original: ``Float[Tensor, "B 3 H W"]`` in [0, 1], the untouched captured image: the image condition.
            instruction: what ``encode_instruction`` returned.
            timestep: the drawn noise level T in ``[1, num_train_timesteps]``; the render is noised near T and
                denoised in ``ddim_steps`` DDIM steps spread over [1, ~0.95 T] (the paper's schedule).
            guidance_scale: text classifier-free guidance weight.
            image_guidance_scale: image classifier-free guidance weight.
            ddim_steps: DDIM steps s taken from ``timestep`` down to a clean image (UNet calls per edit).
            generator: source of the noise, for reproducible edits.

        Returns:
            ``Float[Tensor, "B 3 H W"]`` in [0, 1] on the same device as ``render`` and of the same size.
        """
        ...
