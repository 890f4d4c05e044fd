"""InstructPix2Pix as the editor of Iterative Dataset Update (Instruct-NeRF2NeRF, Haque et al., 2023).

One edit: the NeRF's render of a training view is encoded to latents and noised to the drawn level ``t`` (SDEdit);
DDIM then denoises it while the UNet is conditioned on the instruction and on the *original* captured image of that
view (its latent is concatenated to the UNet input, as InstructPix2Pix was trained). Classifier-free guidance uses
three branches like diffusers' ``StableDiffusionInstructPix2PixPipeline``: text+image, image only, neither.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from backend.editing.components import IP2PComponents
from backend.editing.memory import EditorPlacement, place_components


@dataclass(frozen=True)
class InstructionEmbeddings:
    """What ``encode_instruction`` returns: the text condition, computed once per job."""

    instruction: str
    """The instruction text, kept for logs."""
    text: Tensor
    """``Float[Tensor, "1 77 D"]``: CLIP hidden states of the instruction."""
    unconditional: Tensor
    """``Float[Tensor, "1 77 D"]``: CLIP hidden states of the empty prompt (the text-free guidance branches)."""


def working_size(height: int, width: int, max_side: int, multiple: int = 8) -> tuple[int, int]:
    """Size the editor works at: the longer side at most ``max_side`` (aspect ratio kept), both sides multiples of
    ``multiple`` (the VAE's and UNet's down-sampling), never below ``multiple``."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = min(1.0, max_side / max(height, width))

    def snap(side: int) -> int:
        snapped = max(multiple, int(round(side * scale / multiple)) * multiple)
        return min(snapped, max(multiple, max_side // multiple * multiple))

    return snap(height), snap(width)


def resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``Float[Tensor, "B C H W"]`` (anti-aliased when shrinking); no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def sdedit_timesteps(timestep: int, num_inference_steps: int, num_train_timesteps: int) -> list[int]:
    """DDIM timesteps from ``timestep`` down to 0 with the stride of a ``num_inference_steps`` schedule.

    Why not the reference's loop: in2n noises to ``t`` but then runs *all* 20 DDIM steps from t=951, which asks the
    UNet to denoise a far noisier latent than it is given. SDEdit instead starts denoising exactly where it noised:
    ``t, t - stride, t - 2 stride, ...`` with ``stride = num_train_timesteps // num_inference_steps`` (the step
    DDIMScheduler takes between its timesteps). So a small ``t`` costs few UNet calls (``t // stride + 1``) and only
    lightly changes the render, a large ``t`` re-imagines it, exactly the trade-off IDU's t-range is meant to sample.
    We shift the grid to ``t`` rather than noising to the nearest grid point below it, so that the noise level the
    loop drew and logged is the one applied.
    """
    stride = num_train_timesteps // num_inference_steps
    return list(range(timestep, -1, -stride))


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
        place_components(components, placement)
        self.components = components
        self.placement = placement
        self.max_side = max_side
        self.num_train_timesteps: int = components.scheduler.config["num_train_timesteps"]
        vae_scale_factor = 2 ** (len(components.vae.config["block_out_channels"]) - 1)
        self.size_multiple = max(8, vae_scale_factor)
        """Working sizes are multiples of this (Stable Diffusion: 8, the VAE's down-sampling)."""

    @property
    def device(self) -> torch.device:
        return self.placement.device

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
        num_inference_steps: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """See ``ImageEditor.edit``. ``render``/``original``: ``Float[Tensor, "B 3 H W"]`` in [0, 1] (same size).
        Returns ``Float[Tensor, "B 3 H W"]`` in [0, 1] with ``render``'s size, device and dtype."""
        self._check(render, original, instruction, timestep, num_inference_steps)
        timestep, num_inference_steps = int(timestep), int(num_inference_steps)
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

        scheduler.set_timesteps(num_inference_steps)  # DDIM's step() derives its stride from this
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
        start = torch.tensor([timestep], device=device)
        latents = scheduler.add_noise(latents, noise, start)
        for t in sdedit_timesteps(timestep, num_inference_steps, self.num_train_timesteps):
            model_input = torch.cat([scheduler.scale_model_input(torch.cat([latents] * 3), t), image_condition],
                                    dim=1)
            noise_text, noise_image, noise_uncond = unet(model_input, t, encoder_hidden_states=prompt_embeds,
                                                         return_dict=False)[0].chunk(3)
            noise_pred = (noise_uncond + guidance_scale * (noise_text - noise_image)
                          + image_guidance_scale * (noise_image - noise_uncond))
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]

        edited = vae.decode(latents / scaling, return_dict=False)[0]
        edited = (edited.float() / 2 + 0.5).clamp(0, 1)
        return resize(edited, (height, width)).clamp(0, 1).to(render.device, render.dtype)

    def _check(self, render: Tensor, original: Tensor, instruction: object, timestep: int,
               num_inference_steps: int) -> None:
        if render.ndim != 4 or render.shape[1] != 3:
            raise ValueError(f"render must be B x 3 x H x W, got shape {tuple(render.shape)}")
        if original.shape != render.shape:
            raise ValueError(f"original must have the render's shape {tuple(render.shape)}, "
                             f"got {tuple(original.shape)}")
        if not isinstance(instruction, InstructionEmbeddings):
            raise TypeError("instruction must come from this editor's encode_instruction(), "
                            f"got {type(instruction).__name__}")
        if isinstance(timestep, bool) or not isinstance(timestep, numbers.Integral) or not (
                0 <= timestep < self.num_train_timesteps):
            raise ValueError(f"timestep must be an integer in [0, {self.num_train_timesteps}), got {timestep!r}")
        if not isinstance(num_inference_steps, numbers.Integral) or not (
                1 <= num_inference_steps <= self.num_train_timesteps):
            raise ValueError(f"num_inference_steps must be an integer in [1, {self.num_train_timesteps}], "
                             f"got {num_inference_steps!r}")
