"""InstructPix2Pix as the editor of Iterative Dataset Update (Instruct-NeRF2NeRF, Haque et al., 2023).

One edit: the NeRF's render of a training view is encoded to latents and noised to the drawn level ``t`` (SDEdit);
DDIM then denoises it while the UNet is conditioned on the instruction and on the *original* captured image of that
view (its latent is concatenated to the UNet input, as InstructPix2Pix was trained). Classifier-free guidance uses
three branches like diffusers' ``StableDiffusionInstructPix2PixPipeline``: text+image, image only, neither.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from backend.editing.base import EditStopped
from backend.editing.components import IP2PComponents
from backend.editing.memory import EditorPlacement, place_components
from backend.editing.sizes import working_size


@dataclass(frozen=True)
class InstructionEmbeddings:
    """What ``encode_instruction`` returns: the text condition, computed once per job."""

    instruction: str
    """The instruction text, kept for logs."""
    text: Tensor
    """``Float[Tensor, "1 77 D"]``: CLIP hidden states of the instruction."""
    unconditional: Tensor
    """``Float[Tensor, "1 77 D"]``: CLIP hidden states of the empty prompt (the text-free guidance branches)."""


def resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``Float[Tensor, "B C H W"]`` (anti-aliased when shrinking); no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def paper_timesteps(noise_level: int, ddim_steps: int, steps_offset: int = 1) -> list[int]:
    """The DDIM timesteps of one edit as in the paper and its reference (in2n ``ip2p.py``): "a fixed number of
    intermediate steps s taken between initial timestep t and 0".

    The reference sets the scheduler's ``num_train_timesteps`` to the drawn level T and calls ``set_timesteps(s)``
    ("leading" spacing, ``steps_offset=1``): ``ratio = T // s`` and the steps are ``(s-1) ratio + 1, ..., ratio + 1,
    1``, i.e. s steps spread over [1, ~0.95 T], with the noise added at the first of them; the alphas stay those of
    the full 1000-step training schedule. With T < s there are T steps (ratio 1), as ``set_timesteps`` allows.
    For T = num_train_timesteps this is exactly the grid of diffusers' ``StableDiffusionInstructPix2PixPipeline``.
    """
    if noise_level < 1 or ddim_steps < 1:
        raise ValueError(f"noise level and step count must be >= 1, got {noise_level}, {ddim_steps}")
    steps = min(ddim_steps, noise_level)
    ratio = noise_level // steps
    return [index * ratio + steps_offset for index in reversed(range(steps))]


def ddim_step(alphas_cumprod: Tensor, final_alpha_cumprod: Tensor, noise_pred: Tensor, t: int, t_prev: int,
              latents: Tensor) -> Tensor:
    """One deterministic DDIM update (eta = 0, epsilon prediction, no clipping) from ``t`` to ``t_prev``: what
    ``DDIMScheduler.step`` computes, with the previous timestep given instead of derived from the scheduler's config
    (the reference changes that config per edit; diffusers' configs are frozen). ``t_prev < 0``: the final step."""
    alpha = alphas_cumprod[t]
    alpha_prev = alphas_cumprod[t_prev] if t_prev >= 0 else final_alpha_cumprod
    clean = (latents - (1 - alpha).sqrt() * noise_pred) / alpha.sqrt()
    return (alpha_prev.sqrt() * clean + (1 - alpha_prev).sqrt() * noise_pred).to(latents.dtype)


class InstructPix2PixEditor:
    """Edits renders with InstructPix2Pix; implements ``backend.editing.base.ImageEditor``."""

    def __init__(self, components: IP2PComponents, placement: EditorPlacement, *, max_side: int = 512) -> None:
        """``components`` are placed (cast, moved, or hooked for CPU offload) according to ``placement``.
        ``max_side``: longest side of the working size (larger inputs are resized for editing and back)."""
        if components.unet.config["in_channels"] != 2 * components.vae.config["latent_channels"]:
            raise ValueError("InstructPix2Pix needs a UNet whose in_channels is twice the VAE's latent_channels "
                             f"(noisy latent + image latent); got unet.in_channels="
                             f"{components.unet.config['in_channels']}, vae.latent_channels="
                             f"{components.vae.config['latent_channels']}")
        if max_side < 8:
            raise ValueError(f"max_side must be at least 8, got {max_side}")
        prediction = components.scheduler.config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(f"the editor's DDIM steps need an epsilon-predicting scheduler, got {prediction!r}")
        place_components(components, placement)
        self.components = components
        self.placement = placement
        self.max_side = max_side
        self.num_train_timesteps: int = components.scheduler.config["num_train_timesteps"]
        vae_scale_factor = 2 ** (len(components.vae.config["block_out_channels"]) - 1)
        self.size_multiple = max(8, vae_scale_factor)
        """Working sizes are multiples of this (Stable Diffusion: 8, the VAE's down-sampling)."""
        self.should_stop: Callable[[], bool] = lambda: False
        """Asked before every DDIM step; when it answers True, :meth:`edit` raises :class:`EditStopped` (whoever
        holds the editor sets it: a stopping server must not wait for an edit of up to 1000 steps)."""

    @property
    def device(self) -> torch.device:
        return self.placement.device

    def _autocast(self) -> AbstractContextManager[object]:
        """fp16 autocast around the UNet where the placement asks for it (in2n's trainer autocasts on CUDA)."""
        if self.placement.autocast:
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_instruction(self, instruction: str) -> InstructionEmbeddings:
        """Run the text encoder once on [instruction, ""]; edits reuse the result for the whole job."""
        tokenizer = self.components.tokenizer
        tokens = tokenizer([instruction, ""], padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        hidden = self.components.text_encoder(tokens.input_ids.to(self.device))[0].to(self.placement.dtype)
        return InstructionEmbeddings(instruction, hidden[:1], hidden[1:])

    @torch.inference_mode()
    def edit(
        self,
        render: Tensor,
        original: Tensor,
        instruction: InstructionEmbeddings,
        *,
        timestep: int,
        guidance_scale: float,
        image_guidance_scale: float,
        ddim_steps: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """See ``ImageEditor.edit``. ``render``/``original``: ``Float[Tensor, "B 3 H W"]`` in [0, 1] (same size).
        Returns ``Float[Tensor, "B 3 H W"]`` in [0, 1] with ``render``'s size, device and dtype."""
        self._check(render, original, instruction, timestep, ddim_steps)
        timestep, ddim_steps = int(timestep), int(ddim_steps)
        batch, _, height, width = render.shape
        size = working_size(height, width, self.max_side, self.size_multiple)
        dtype, device = self.placement.dtype, self.device
        pixels = torch.cat([resize(render.to(device, torch.float32), size),
                            resize(original.to(device, torch.float32), size)]).clamp(0, 1).to(dtype) * 2 - 1

        vae, unet, scheduler = self.components.vae, self.components.unet, self.components.scheduler
        scaling = vae.config["scaling_factor"]
        # One VAE pass for render and original. The render latent is scaled (diffusion space); the original's is
        # not: IP2P's image condition is the raw posterior mode (diffusers' prepare_image_latents). The mode rather
        # than a sample for the render, too: the forward noise added next dominates the posterior's tiny spread.
        render_latents, image_latents = vae.encode(pixels).latent_dist.mode().chunk(2)
        latents = render_latents * scaling
        image_condition = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
        prompt_embeds = torch.cat([
            instruction.text.to(device, dtype).expand(batch, -1, -1),
            instruction.unconditional.to(device, dtype).expand(batch, -1, -1),
            instruction.unconditional.to(device, dtype).expand(batch, -1, -1),
        ])

        timesteps = paper_timesteps(timestep, ddim_steps, scheduler.config.get("steps_offset", 1))
        ratio = timestep // len(timesteps)
        alphas = scheduler.alphas_cumprod.to(device, torch.float32)
        final_alpha = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float32, device=device)
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
        start = torch.tensor([timesteps[0]], device=device, dtype=torch.int)
        latents = scheduler.add_noise(latents, noise, start)  # type: ignore[arg-type]  # an int tensor, as it asks
        with self._autocast():
            for t in timesteps:
                if self.should_stop():
                    raise EditStopped(f"stopped before DDIM step {t}")
                model_input = torch.cat([torch.cat([latents] * 3), image_condition], dim=1)
                noise_text, noise_image, noise_uncond = unet(model_input, t, encoder_hidden_states=prompt_embeds,
                                                             return_dict=False)[0].float().chunk(3)
                noise_pred = (noise_uncond + guidance_scale * (noise_text - noise_image)
                              + image_guidance_scale * (noise_image - noise_uncond))
                latents = ddim_step(alphas, final_alpha, noise_pred, t, t - ratio, latents.float()).to(dtype)

        edited = vae.decode(latents / scaling, return_dict=False)[0]
        edited = (edited.float() / 2 + 0.5).clamp(0, 1)
        return resize(edited, (height, width)).clamp(0, 1).to(render.device, render.dtype)

    def _check(self, render: Tensor, original: Tensor, instruction: object, timestep: int,
               ddim_steps: int) -> None:
        if render.ndim != 4 or render.shape[1] != 3:
            raise ValueError(f"render must be B x 3 x H x W, got shape {tuple(render.shape)}")
        if original.shape != render.shape:
            raise ValueError(f"original must have the render's shape {tuple(render.shape)}, "
                             f"got {tuple(original.shape)}")
        if not isinstance(instruction, InstructionEmbeddings):
            raise TypeError("instruction must come from this editor's encode_instruction(), "
                            f"got {type(instruction).__name__}")
        if isinstance(timestep, bool) or not isinstance(timestep, numbers.Integral) or not (
                1 <= timestep <= self.num_train_timesteps):
            raise ValueError(f"timestep must be an integer in [1, {self.num_train_timesteps}], got {timestep!r}")
        if not isinstance(ddim_steps, numbers.Integral) or not (
                1 <= ddim_steps <= self.num_train_timesteps):
            raise ValueError(f"ddim_steps must be an integer in [1, {self.num_train_timesteps}], "
                             f"got {ddim_steps!r}")
