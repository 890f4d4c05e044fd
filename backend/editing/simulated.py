"""A SIMULATED instruction editor: not InstructPix2Pix. For the 3D-consistency benchmark and for demos on machines
without model weights (editor source ``simulated``); it is named "simulated" wherever a user sees its results.

It implements :class:`backend.editing.base.ImageEditor` so that the engine's Iterative Dataset Update runs unchanged,
but instead of a diffusion model it knows the ground-truth edited image of every training view (rendered by Blender,
carried by the scene as ``target_file_path`` per frame) and imitates what matters about an SDEdit-style 2D editor for
3D consistency:

* **SDEdit-like blend**: the result is ``(1 - alpha(t)) * render + alpha(t) * ground_truth_edit``; ``alpha`` grows with
  the noise level ``t`` (little noise keeps the render, full noise gives the edit), ``alpha = s ** blend_exponent``
  with ``s = min(1, t / (full_edit_at * T))``.
* **per-call inconsistencies** whose strength is ``s`` (stronger at larger ``t``, as a diffusion model invents more
  from more noise): a small random shift of the image (sub-pixel to ``max_shift_px``), a random hue rotation and
  brightness gain, and a few random soft colour blobs. Every call draws new ones (from ``generator``), so two edits of
  the same view disagree, and edits of different views are not 3D-consistent, which is the failure mode the paper's
  Iterative Dataset Update is meant to fix.

The view being edited is recognised from the ``original`` image the engine passes (exact match on its 8-bit pixels,
falling back to the nearest known original within a tolerance); an unknown image is an error, never a guess.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from backend.pixels import to_uint8
from backend.scene import TARGET_KEY, Scene

SOURCE = "simulated"
"""``EditorConfig.source`` that selects this editor."""


class SimulatedTargetsMissing(ValueError):
    """The simulated editor was chosen for a scene without ground-truth edited images."""


def _read_rgb(path: Path) -> np.ndarray:
    """``H W 3`` uint8 pixels (alpha dropped: the engine composites RGBA captures before editing)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


@dataclass
class SimulationConfig:
    """How the simulated editor blends and how inconsistent its results are (at full strength, ``t = t_full``)."""

    full_edit_at: float = 0.98
    """Fraction of the diffusion schedule at (and above) which the result is the full edit (``alpha = 1``)."""
    blend_exponent: float = 0.5
    """``alpha = s ** blend_exponent``: below 1, moderate noise levels already move most of the way to the edit (as
    SDEdit does: at half the schedule most of the colour is re-generated)."""
    max_shift_px: float = 1.5
    """Standard deviation of the random image shift in pixels at full strength (clamped to twice this)."""
    hue_deg: float = 8.0
    """Standard deviation of the random hue rotation (about the grey axis) at full strength, in degrees."""
    brightness: float = 0.06
    """Standard deviation of the random brightness gain (``1 + N(0, brightness)``) at full strength."""
    blobs: int = 3
    """Random soft colour blobs added per call."""
    blob_amplitude: float = 0.2
    """Standard deviation of a blob's colour offset (per channel) at full strength."""
    blob_radius: tuple[float, float] = (0.04, 0.12)
    """Range of a blob's Gaussian radius, as a fraction of the image side."""
    match_tolerance: float = 1e-4
    """Largest mean squared difference at which an ``original`` still counts as a known view (nearest match)."""


def _key(image: Tensor) -> str:
    """Content hash of a ``3 H W`` image in [0, 1] at 8 bits (what a PNG round trip preserves)."""
    pixels = to_uint8(image)
    return hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def hue_rotation(angle: Tensor) -> Tensor:
    """``3 3`` rotation about the grey axis (1, 1, 1)/sqrt(3) by ``angle`` radians: shifts hue, keeps grey grey."""
    axis = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=angle.dtype)
    cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                         dtype=angle.dtype)
    return torch.cos(angle) * torch.eye(3, dtype=angle.dtype) + torch.sin(angle) * cross \
        + (1 - torch.cos(angle)) * torch.outer(axis, axis)


def shift_image(image: Tensor, dx: float, dy: float) -> Tensor:
    """``3 H W`` image translated by (dx, dy) pixels (bilinear, border pixels repeated)."""
    _, height, width = image.shape
    theta = torch.tensor([[1.0, 0.0, -2.0 * dx / width], [0.0, 1.0, -2.0 * dy / height]], dtype=image.dtype,
                         device=image.device)
    grid = F.affine_grid(theta[None], [1, 3, height, width], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


class SimulatedInstructEditor:
    """SIMULATION of an instruction editor (see the module docstring); an :class:`ImageEditor`.

    Args:
        originals: ``N 3 H W`` in [0, 1], the original training images (how views are recognised).
        targets: ``N 3 H W`` in [0, 1], the ground-truth edited image of each view, same order.
        config: blend and inconsistency settings.
    """

    num_train_timesteps: int = 1000
    edits_crops: bool = False
    """It recognises whole training views only: local edits give it the whole view (its mask still applies)."""

    def __init__(self, originals: Tensor, targets: Tensor, config: SimulationConfig | None = None) -> None:
        if originals.ndim != 4 or originals.shape[1] != 3 or originals.shape != targets.shape:
            raise ValueError(f"originals and targets must both be N 3 H W, got {tuple(originals.shape)} and "
                             f"{tuple(targets.shape)}")
        self.config = config or SimulationConfig()
        self.originals = originals.detach().float().cpu()
        self.targets = targets.detach().float().cpu()
        self._index = {_key(image): view for view, image in enumerate(self.originals)}
        self.timesteps: list[int] = []
        """Noise level of every call so far (one entry per edited image), for reports and tests."""

    @classmethod
    def from_images(cls, originals: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                    config: SimulationConfig | None = None) -> SimulatedInstructEditor:
        """From ``H W 3`` uint8 images (e.g. PNGs read with PIL)."""
        def stack(images: Sequence[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0

        return cls(stack(originals), stack(targets), config)

    @classmethod
    def from_scene(cls, scene: Scene, config: SimulationConfig | None = None) -> SimulatedInstructEditor:
        """From a scene whose every frame names its ground-truth edit (``target_file_path``), e.g. one uploaded by
        the add-on with target images, or the demo's scene folder."""
        missing = [frame.image_path.name for frame in scene.frames if frame.target_path is None]
        if missing:
            raise SimulatedTargetsMissing(
                f"the simulated editor needs a ground-truth edited image for every view ('{TARGET_KEY}' in each "
                f"frame of transforms.json); {len(missing)} of {scene.num_views} views have none (first: "
                f"{missing[0]}). Use a real editor (an InstructPix2Pix model id or folder) for real captures.")
        originals = [_read_rgb(frame.image_path) for frame in scene.frames]
        targets = [_read_rgb(frame.target_path) for frame in scene.frames if frame.target_path is not None]
        return cls.from_images(originals, targets, config)

    # -- ImageEditor ---------------------------------------------------------------------------------------------

    def encode_instruction(self, instruction: str) -> str:
        """Nothing to encode: the simulation's "instruction" is the ground truth it was built with."""
        return instruction

    def view_of(self, original: Tensor) -> int:
        """Index of the training view whose original image is ``original`` (``3 H W``)."""
        view = self._index.get(_key(original))
        if view is not None:
            return view
        if tuple(original.shape) != tuple(self.originals.shape[1:]):
            raise ValueError(f"original: image of shape {tuple(original.shape)} does not match the known views "
                             f"{tuple(self.originals.shape[1:])}")
        errors = ((self.originals - original.detach().float().cpu()[None]) ** 2).mean(dim=(1, 2, 3))
        best = int(errors.argmin())
        if float(errors[best]) > self.config.match_tolerance:
            raise ValueError(f"original: not one of the {len(self.originals)} known training views (closest mean "
                             f"squared difference {float(errors[best]):.2e})")
        return best

    def strength(self, timestep: int) -> float:
        """``s`` in [0, 1]: how far along the schedule ``timestep`` is, relative to ``full_edit_at``."""
        return min(1.0, max(0.0, timestep / (self.config.full_edit_at * self.num_train_timesteps)))

    def alpha(self, timestep: int) -> float:
        """Weight of the ground-truth edit in the result."""
        return self.strength(timestep) ** self.config.blend_exponent

    def edit(self, render: Tensor, original: Tensor, instruction: Any, *, timestep: int, guidance_scale: float = 7.5,
             image_guidance_scale: float = 1.5, ddim_steps: int = 20,
             generator: torch.Generator | None = None) -> Tensor:
        """Simulated edit of ``B 3 H W`` renders (guidance and step arguments are accepted and ignored)."""
        if render.ndim != 4 or render.shape[1] != 3 or original.shape[0] != render.shape[0]:
            raise ValueError(f"render/original must be B 3 H W batches, got {tuple(render.shape)} and "
                             f"{tuple(original.shape)}")
        if not 0 <= timestep <= self.num_train_timesteps:
            raise ValueError(f"timestep must be in [0, {self.num_train_timesteps}], got {timestep}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        results = []
        for item in range(render.shape[0]):
            view = self.view_of(original[item])
            target = self.targets[view]
            if target.shape[-2:] != render.shape[-2:]:
                target = F.interpolate(target[None], size=render.shape[-2:], mode="bilinear", antialias=True)[0]
            results.append(self._simulate(render[item].detach().float().cpu(), target, timestep, generator))
            self.timesteps.append(int(timestep))
        return torch.stack(results).to(render.device, render.dtype)

    # -- the simulation ------------------------------------------------------------------------------------------

    def _simulate(self, render: Tensor, target: Tensor, timestep: int, generator: torch.Generator) -> Tensor:
        config = self.config
        s, alpha = self.strength(timestep), self.alpha(timestep)
        image = (1 - alpha) * render + alpha * target
        _, height, width = image.shape

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator)

        limit = 2 * config.max_shift_px
        dx, dy = (normal(2) * config.max_shift_px * s).clamp(-limit, limit).tolist()
        image = shift_image(image, dx, dy)

        rotation = hue_rotation(normal(1)[0] * math.radians(config.hue_deg) * s)
        gain = 1.0 + float(normal(1)[0]) * config.brightness * s
        image = gain * torch.einsum("ij,jhw->ihw", rotation, image)

        ys = torch.arange(height, dtype=torch.float32)[:, None]
        xs = torch.arange(width, dtype=torch.float32)[None, :]
        low, high = config.blob_radius
        for _ in range(config.blobs):
            cx, cy = (torch.rand(2, generator=generator) * torch.tensor([width, height])).tolist()
            radius = (low + (high - low) * float(torch.rand(1, generator=generator))) * max(height, width)
            color = normal(3) * config.blob_amplitude * s
            weight = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
            image = image + color[:, None, None] * weight[None]
        return image.clamp(0, 1)
