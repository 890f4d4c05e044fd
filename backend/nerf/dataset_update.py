"""Iterative Dataset Update (Haque et al., 2023): the schedule of which view is edited when, and one edit.

Every ``edit_every_n_steps`` NeRF steps, ``images_per_edit`` views are edited, visiting the views one after another in a random
order fixed at the start (and cycling through it again). An edit renders the current NeRF at that training camera,
draws a noise level ``t`` uniformly from ``[t_min, t_max]`` of the diffusion schedule, lets the editor denoise the
noised render conditioned on the view's *original* image and the instruction, and replaces the view's dataset image.

Everything random here is a pure function of ``(seed, edit index)``, so a resumed job continues the exact sequence.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from backend.config import DatasetUpdateConfig
from backend.editing.base import ImageEditor
from backend.nerf.local_edit import edit_locally

if TYPE_CHECKING:
    from backend.nerf.trainer import NerfTrainer


@dataclass
class EditRecord:
    """What one edit did (logged, shown to the user, asserted by tests)."""

    edit_index: int
    """How many edits came before this one in the job."""
    view: int
    """Dataparser index of the edited view."""
    timestep: int
    """Noise level the render was noised to, in ``[0, num_train_timesteps)``."""
    render_seconds: float
    edit_seconds: float
    image: Tensor
    """``H W 3`` new dataset image in [0, 1] (CPU)."""


class EditSchedule:
    """View order and noise levels; stateless apart from the number of edits done (``edits_done``)."""

    def __init__(self, config: DatasetUpdateConfig, num_views: int, num_train_timesteps: int, edits_done: int = 0):
        if num_views < 1:
            raise ValueError("the dataset has no views")
        if not 0.0 <= config.t_min <= config.t_max <= 1.0:
            raise ValueError(f"t_min/t_max must satisfy 0 <= t_min <= t_max <= 1, got {config.t_min}, {config.t_max}")
        if config.edit_every_n_steps < 1 or config.images_per_edit < 1:
            raise ValueError("edit_every_n_steps and images_per_edit must be at least 1")
        self.config = config
        self.num_views = num_views
        self.num_train_timesteps = num_train_timesteps
        self.edits_done = edits_done
        self.view_order = [int(v) for v in np.random.default_rng(config.seed).permutation(num_views)]
        """The fixed random order views are visited in."""

    def is_edit_step(self, edit_step: int) -> bool:
        """Whether edits happen before NeRF step ``edit_step`` of the editing phase (0, edit_every_n_steps, 2 edit_every_n_steps...)."""
        return edit_step % self.config.edit_every_n_steps == 0

    def view_for(self, edit_index: int) -> int:
        return self.view_order[edit_index % self.num_views]

    def timestep_bounds(self) -> tuple[int, int]:
        """Inclusive integer bounds of the noise level T (in2n: ``int(1000 t_min)`` .. ``int(1000 t_max)``), inside
        [1, num_train_timesteps]: the editor spreads its DDIM steps over [1, ~0.95 T]."""
        total = self.num_train_timesteps
        low = max(1, min(int(math.floor(total * self.config.t_min)), total))
        high = min(int(math.floor(total * self.config.t_max)), total)
        return low, max(low, high)

    def generator_for(self, edit_index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + edit_index)

    def timestep_for(self, edit_index: int) -> int:
        low, high = self.timestep_bounds()
        return int(torch.randint(low, high + 1, (1,), generator=self.generator_for(edit_index)).item())


class DatasetUpdater:
    """Performs the edits: render -> editor -> replace the dataset image (inside the view's edit mask only, when the
    scene has one: :mod:`backend.nerf.local_edit`)."""

    def __init__(self, schedule: EditSchedule, editor: ImageEditor, instruction: object,
                 masks: dict[int, Tensor] | None = None) -> None:
        self.schedule = schedule
        self.editor = editor
        self.instruction = instruction
        """What ``editor.encode_instruction(prompt)`` returned: computed once per job."""
        self.masks = masks or {}
        """View -> ``H W`` soft edit mask in [0, 1] (dilated and feathered); views without one are edited whole."""

    def edit_next(self, trainer: NerfTrainer) -> list[EditRecord]:
        """Edit the next ``images_per_edit`` views in the fixed order."""
        return [self.edit_view(trainer, self.schedule.edits_done) for _ in range(self.schedule.config.images_per_edit)]

    def edit_view(self, trainer: NerfTrainer, edit_index: int) -> EditRecord:
        config = self.schedule.config
        view = self.schedule.view_for(edit_index)
        timestep = self.schedule.timestep_for(edit_index)
        started = time.perf_counter()
        render = trainer.render_view(view)  # H W 3
        rendered = time.perf_counter()
        datamanager = trainer.datamanager
        original = datamanager.original_image(view).to(render.device)
        mask = self.masks.get(view)

        def edit(render_crop: Tensor, original_crop: Tensor) -> Tensor:
            """``h w 3`` -> ``h w 3``: one InstructPix2Pix edit (noise, original as condition, instruction)."""
            edited = self.editor.edit(
                render_crop.permute(2, 0, 1)[None],
                original_crop.permute(2, 0, 1)[None],
                self.instruction,
                timestep=timestep,
                guidance_scale=config.guidance_scale,
                image_guidance_scale=config.image_guidance_scale,
                ddim_steps=config.ddim_steps,
                generator=self.schedule.generator_for(edit_index),
            )
            if edited.shape[-2:] != render_crop.shape[:2]:
                edited = torch.nn.functional.interpolate(edited.float(), size=render_crop.shape[:2], mode="bilinear")
            return edited[0].permute(1, 2, 0).float().clamp(0, 1)

        if mask is None:
            image = edit(render, original).cpu()
        else:
            crop = config.crop_to_mask and getattr(self.editor, "edits_crops", True)
            image = edit_locally(edit, render, original, mask.to(render.device), crop=crop).cpu()
        finished = time.perf_counter()
        datamanager.set_image(view, image)
        self.schedule.edits_done = edit_index + 1
        return EditRecord(edit_index, view, timestep, rendered - started, finished - rendered, image)

