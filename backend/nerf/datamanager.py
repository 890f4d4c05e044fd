"""A nerfstudio datamanager whose training images can be replaced while training (Iterative Dataset Update).

All training images are loaded once into one ``N H W 3`` tensor (nerfstudio's ``CacheDataloader`` with every image
cached); rays are sampled from that tensor every step, so replacing a view there is all an edit needs to take
effect. A separate copy of the original images is kept: they are the editor's image condition, always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.datasets.depth_dataset import DepthDataset
from torch import Tensor


@dataclass
class EditableDataManagerConfig(VanillaDataManagerConfig):
    """VanillaDataManager over a replaceable, fully cached image set."""

    _target: type = field(default_factory=lambda: EditableDataManager)
    load_depth: bool = False
    """Load every view's depth image too (nerfstudio's DepthDataset); only when every view has one: without them
    DepthDataset would estimate depth with a downloaded network."""


class EditableDataManager(VanillaDataManager):
    """Samples training rays from every view's *current* image (edited or not)."""

    config: EditableDataManagerConfig

    @cached_property
    def dataset_type(self) -> type[InputDataset]:
        return DepthDataset if self.config.load_depth else InputDataset

    def setup_train(self) -> None:
        super().setup_train()
        self.image_batch: dict[str, Any] = next(self.iter_train_image_dataloader)
        images = self.image_batch["image"]
        if not isinstance(images, Tensor):
            raise ValueError("all training images must share one size (got a variable-resolution batch)")
        # image_batch rows are in dataloader order; position_of[view] finds a view's row.
        self.position_of = {int(view): row for row, view in enumerate(self.image_batch["image_idx"].tolist())}
        self.original_images: Tensor = images[..., :3].clone()
        self.focus_pixels: Tensor | None = None
        self.focus_fraction = 0.0

    def focus(self, masks: dict[int, Tensor], fraction: float) -> int:
        """From now on draw ``fraction`` of every batch uniformly from the pixels inside ``masks`` (view -> ``H W``,
        > 0 inside), the rest from every pixel as before; returns how many pixels the masks hold."""
        pixels = []  # (row, y, x) of every pixel inside a mask
        for view, mask in masks.items():
            ys, xs = torch.nonzero(mask > 0, as_tuple=True)
            pixels.append(torch.stack([torch.full_like(ys, self.position_of[view]), ys, xs], dim=-1))
        self.focus_pixels = torch.cat(pixels) if pixels else None
        self.focus_fraction = fraction
        return 0 if self.focus_pixels is None else len(self.focus_pixels)

    @property
    def num_views(self) -> int:
        return len(self.position_of)

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        """Rays from the whole current dataset: edited and not-yet-edited views alike."""
        self.train_count += 1
        assert self.train_pixel_sampler is not None
        batch = self.train_pixel_sampler.sample(self.image_batch)
        focus, count = self.focus_pixels, int(len(batch["indices"]) * self.focus_fraction)
        if focus is not None and count:  # the sampler's pixels are uniform: its last `count` become pixels in the masks
            c, y, x = focus[torch.randint(len(focus), (count,))].unbind(-1)
            for key, value in self.image_batch.items():
                if key != "image_idx" and value is not None and key in batch:
                    batch[key][-count:] = value[c, y, x].to(batch[key])
            batch["indices"][-count:] = torch.stack([self.image_batch["image_idx"][c], y, x], dim=-1).to(
                batch["indices"])
        return self.train_ray_generator(batch["indices"]), batch

    def original_image(self, view: int) -> Tensor:
        """``H W 3`` float image as captured (never modified)."""
        return self.original_images[self.position_of[view]]

    def current_image(self, view: int) -> Tensor:
        """``H W 3`` float image the NeRF is currently trained on."""
        return self.image_batch["image"][self.position_of[view]][..., :3]

    def set_original(self, view: int, image: Tensor) -> None:
        """Replace view ``view``'s editor condition (a chained edit conditioned on its starting NeRF's renders)."""
        row = self.position_of[view]
        if image.shape != self.original_images[row].shape:
            raise ValueError(f"condition image has shape {tuple(image.shape)}, expected "
                             f"{tuple(self.original_images[row].shape)}")
        self.original_images[row] = image.to(self.original_images).clamp(0, 1)

    def set_image(self, view: int, image: Tensor) -> None:
        """Replace view ``view``'s training image with ``image`` (``H W 3`` in [0, 1])."""
        row = self.position_of[view]
        target = self.image_batch["image"]
        if image.shape != target[row][..., :3].shape:
            raise ValueError(f"edited image has shape {tuple(image.shape)}, expected {tuple(target[row][..., :3].shape)}")
        with torch.no_grad():
            target[row, ..., :3] = image.to(device=target.device, dtype=target.dtype).clamp(0, 1)
