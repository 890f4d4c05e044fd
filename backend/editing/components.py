"""The diffusers / transformers parts an InstructPix2Pix editor is made of, and the two random builds of them.

* ``tiny_components``: diffusers-test-sized models (``get_dummy_components`` style: ``torch.manual_seed(0)`` before
  each part) with the *real* CLIP tokenizer, so every code path of the editor runs in a fraction of a second on a CPU.
* ``full_random_components``: the exact InstructPix2Pix architecture (Stable Diffusion 1.5 UNet with 8 input
  channels, SD VAE, CLIP ViT-L/14 text encoder) with random weights: same shapes and FLOPs as the real model, for
  speed measurements without a download.

Real weights come from ``backend.editing.loaders`` (Hugging Face id or local folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Concrete modules rather than the lazy ``diffusers`` namespace, so type checkers see the real classes.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from backend.editing.clip_tokenizer import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE, load_clip_tokenizer

_BOS_ID, _EOS_ID = CLIP_VOCAB_SIZE - 2, CLIP_VOCAB_SIZE - 1


@dataclass
class IP2PComponents:
    """Everything the editor runs; the same five parts a diffusers InstructPix2Pix pipeline holds."""

    unet: UNet2DConditionModel
    """Noise predictor; ``in_channels == 8``: the noisy latent concatenated with the original image's latent."""
    vae: AutoencoderKL
    """Image <-> latent autoencoder."""
    text_encoder: CLIPTextModel
    """Turns the tokenized instruction into the UNet's cross-attention context."""
    tokenizer: CLIPTokenizer
    """CLIP BPE tokenizer matching ``text_encoder``."""
    scheduler: DDIMScheduler
    """Noise schedule; also adds the forward-process noise (``add_noise``)."""

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts of the three networks."""
        return {name: sum(p.numel() for p in getattr(self, name).parameters())
                for name in ("unet", "vae", "text_encoder")}


#: DDIM settings of the reference (in2n loads CompVis/stable-diffusion-v1-4's DDIM scheduler config).
DDIM_SETTINGS: dict[str, Any] = {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
                                 "timestep_spacing": "leading", "prediction_type": "epsilon"}


def stable_diffusion_ddim_scheduler() -> DDIMScheduler:
    """The DDIM scheduler with Stable Diffusion 1.x's training schedule (what in2n uses for InstructPix2Pix)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         **DDIM_SETTINGS)


def tiny_components() -> IP2PComponents:
    """Tiny random InstructPix2Pix (~2.5M parameters, most of them the 49408-token embedding table)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=_BOS_ID,
        eos_token_id=_EOS_ID,
        pad_token_id=_EOS_ID,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        max_position_embeddings=CLIP_CONTEXT_LENGTH,
        vocab_size=CLIP_VOCAB_SIZE,  # the real tokenizer's ids must fit
    ))
    return IP2PComponents(unet.eval(), vae.eval(), text_encoder.eval(), load_clip_tokenizer(),
                          stable_diffusion_ddim_scheduler())


def full_random_unet() -> UNet2DConditionModel:
    """InstructPix2Pix's UNet: Stable Diffusion 1.5's (``timbrooks/instruct-pix2pix/unet/config.json``) with 8 input
    channels; random weights."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def full_random_vae() -> AutoencoderKL:
    """Stable Diffusion's VAE architecture (8x down-sampling, 4 latent channels); random weights."""
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    ).eval()


def full_random_text_encoder() -> CLIPTextModel:
    """CLIP ViT-L/14's text tower (Stable Diffusion 1.x's text encoder); random weights."""
    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=CLIP_CONTEXT_LENGTH,
        hidden_act="quick_gelu",
        projection_dim=768,
        bos_token_id=_BOS_ID,
        eos_token_id=_EOS_ID,
        pad_token_id=1,
    )).eval()


def full_random_components(device: torch.device | str = "cpu") -> IP2PComponents:
    """The real InstructPix2Pix architecture (SD 1.5 + 8-channel UNet input) with random weights, built on ``device``.

    Configs are those of ``timbrooks/instruct-pix2pix``, written out so that no download is needed. Building on the
    target device avoids a 4 GB CPU -> GPU copy; ``meta`` builds the architecture without memory (parameter counts).
    """
    with torch.device(device):
        unet, vae, text_encoder = full_random_unet(), full_random_vae(), full_random_text_encoder()
    return IP2PComponents(unet, vae, text_encoder, load_clip_tokenizer(), stable_diffusion_ddim_scheduler())
