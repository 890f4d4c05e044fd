"""Behaviour of the InstructPix2Pix editor with the tiny random model (real diffusers UNet / VAE / DDIM code)."""

from __future__ import annotations

import pytest
import torch

from backend.editing import ip2p
from backend.editing.base import ImageEditor
from backend.editing.ip2p import InstructionEmbeddings, InstructPix2PixEditor, paper_timesteps

pytestmark = pytest.mark.timeout(120)

STEPS = 4
"""DDIM steps per edit in these tests (the paper's s): 4 UNet calls for any noise level T >= 4."""


def edit(editor: InstructPix2PixEditor, render: torch.Tensor, original: torch.Tensor,
         instruction: InstructionEmbeddings, timestep: int, *, seed: int = 0, guidance_scale: float = 7.5,
         image_guidance_scale: float = 1.5, steps: int = STEPS) -> torch.Tensor:
    return editor.edit(render, original, instruction, timestep=timestep, guidance_scale=guidance_scale,
                       image_guidance_scale=image_guidance_scale, ddim_steps=steps,
                       generator=torch.Generator().manual_seed(seed))


class UNetRecorder:
    """Records every UNet call's inputs (forward pre-hook) and outputs (forward hook)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.inputs: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        self.outputs: list[torch.Tensor] = []
        self._handles = [
            unet.register_forward_pre_hook(self._before, with_kwargs=True),
            unet.register_forward_hook(self._after),
        ]

    def _before(self, module, args, kwargs):
        sample, timestep = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
        hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        self.inputs.append((sample.clone(), int(timestep), hidden.clone()))

    def _after(self, module, args, output):
        self.outputs.append((output[0] if isinstance(output, tuple) else output.sample).clone())

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def test_satisfies_the_image_editor_protocol(tiny_editor):
    assert isinstance(tiny_editor, ImageEditor)
    assert tiny_editor.num_train_timesteps == 1000


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 37, 53), (1, 3, 150, 71)])
def test_output_has_the_input_shape_device_dtype_and_range(tiny_editor, instruction, scene_images, shape):
    render, original = scene_images(shape[0], shape[2], shape[3])
    recorder = UNetRecorder(tiny_editor.components.unet)
    try:
        out = edit(tiny_editor, render.double(), original.double(), instruction, 600)
    finally:
        recorder.close()
    assert out.shape == render.shape and out.dtype == torch.float64 and out.device == render.device
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0
    # The UNet saw the working size: longer side <= max_side (64), multiples of 8, i.e. latents of half that.
    latent_h, latent_w = recorder.inputs[0][0].shape[-2:]
    vae_factor = 2  # the tiny VAE down-samples once
    assert max(latent_h, latent_w) * vae_factor <= tiny_editor.max_side
    assert (latent_h * vae_factor) % 8 == 0 and (latent_w * vae_factor) % 8 == 0


@pytest.mark.parametrize("timestep", [1, 3, 20, 249, 250, 600, 1000])
def test_unet_runs_s_times_spread_over_the_drawn_level_with_three_guidance_branches(
        tiny_editor, instruction, scene_images, timestep):
    render, original = scene_images(batch=2)
    recorder = UNetRecorder(tiny_editor.components.unet)
    try:
        edit(tiny_editor, render, original, instruction, timestep)
    finally:
        recorder.close()
    steps = min(STEPS, timestep)  # the reference's set_timesteps(s) with num_train_timesteps = T
    ratio = timestep // steps
    assert [t for _, t, _ in recorder.inputs] == [k * ratio + 1 for k in reversed(range(steps))]
    assert len(recorder.inputs) == steps
    for sample, _, hidden in recorder.inputs:
        assert sample.shape[:2] == (3 * 2, 8)  # 3 branches x batch 2; noisy latent + image latent
        assert hidden.shape[0] == 3 * 2


@pytest.mark.parametrize(("level", "steps"), [(1000, 20), (980, 20), (500, 20), (37, 20), (20, 20), (977, 7)])
def test_paper_schedule_is_diffusers_ddim_with_the_drawn_level_as_training_length(level, steps):
    """in2n sets ``scheduler.config.num_train_timesteps = T`` and calls ``set_timesteps(s)``: diffusers' own DDIM
    scheduler built with T as its length gives the same grid (an independent computation of it)."""
    from diffusers import DDIMScheduler

    from backend.editing.components import DDIM_SETTINGS

    reference = DDIMScheduler(num_train_timesteps=level, **DDIM_SETTINGS)
    reference.set_timesteps(min(steps, level))
    assert paper_timesteps(level, steps) == reference.timesteps.tolist()


def test_unet_is_conditioned_on_the_original_image_and_instruction(tiny_editor, instruction, scene_images):
    render, original = scene_images(batch=2)
    recorder = UNetRecorder(tiny_editor.components.unet)
    try:
        edit(tiny_editor, render, original, instruction, 500)
    finally:
        recorder.close()
    vae = tiny_editor.components.vae
    with torch.no_grad():  # IP2P's image condition: the unscaled posterior mode of the *original* image
        expected = vae.encode(original * 2 - 1).latent_dist.mode()
        render_latent = vae.encode(render * 2 - 1).latent_dist.mode()
    for sample, _, hidden in recorder.inputs:
        text_image, image_only, unconditional = sample[:, 4:].chunk(3)
        torch.testing.assert_close(text_image, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(image_only, expected, rtol=1e-4, atol=1e-4)
        assert torch.count_nonzero(unconditional) == 0
        assert not torch.allclose(text_image, render_latent, atol=1e-2)
        text, no_text_1, no_text_2 = hidden.chunk(3)
        torch.testing.assert_close(text, instruction.text.expand(2, -1, -1))
        torch.testing.assert_close(no_text_1, instruction.unconditional.expand(2, -1, -1))
        torch.testing.assert_close(no_text_2, instruction.unconditional.expand(2, -1, -1))
    assert not torch.allclose(instruction.text, instruction.unconditional)


def test_noise_prediction_combines_the_branches_with_both_guidance_scales(tiny_editor, instruction, scene_images,
                                                                          monkeypatch):
    render, original = scene_images()
    guided: list[torch.Tensor] = []
    real_step = ip2p.ddim_step

    def recording_step(alphas, final_alpha, noise_pred, *args, **kwargs):
        guided.append(noise_pred.clone())
        return real_step(alphas, final_alpha, noise_pred, *args, **kwargs)

    monkeypatch.setattr(ip2p, "ddim_step", recording_step)
    recorder = UNetRecorder(tiny_editor.components.unet)
    try:
        edit(tiny_editor, render, original, instruction, 999, guidance_scale=5.0, image_guidance_scale=2.5)
    finally:
        recorder.close()
    assert len(guided) == len(recorder.outputs) == 4
    for raw, combined in zip(recorder.outputs, guided):
        text, image, uncond = raw.chunk(3)
        torch.testing.assert_close(combined, uncond + 5.0 * (text - image) + 2.5 * (image - uncond))


def test_same_generator_reproduces_the_edit_and_another_seed_changes_it(tiny_editor, instruction, scene_images):
    render, original = scene_images()
    first = edit(tiny_editor, render, original, instruction, 700, seed=1)
    again = edit(tiny_editor, render, original, instruction, 700, seed=1)
    other = edit(tiny_editor, render, original, instruction, 700, seed=2)
    assert torch.equal(first, again)
    assert (first - other).abs().mean() > 1e-3


def test_changing_the_original_changes_the_edit(tiny_editor, instruction, scene_images):
    render, original = scene_images(seed=0)
    _, other_original = scene_images(seed=1)
    a = edit(tiny_editor, render, original, instruction, 500)
    b = edit(tiny_editor, render, other_original, instruction, 500)
    assert (a - b).abs().mean() > 1e-3


def test_render_matters_at_low_noise_and_hardly_at_high_noise(tiny_editor, instruction, scene_images):
    """SDEdit: at small t the edit stays close to the render; at t ~ T the render is almost all noise."""
    render, original = scene_images(seed=0)
    other_render, _ = scene_images(seed=1)

    def render_influence(timestep: int) -> float:
        a = edit(tiny_editor, render, original, instruction, timestep)
        b = edit(tiny_editor, other_render, original, instruction, timestep)
        return (a - b).abs().mean().item()

    low, high = render_influence(20), render_influence(1000)
    assert low > 3 * high, (low, high)


def test_larger_timestep_moves_the_latent_further_from_the_render(tiny_editor, instruction, scene_images,
                                                                  monkeypatch):
    render, original = scene_images()
    vae = tiny_editor.components.vae
    decoded: list[torch.Tensor] = []
    real_decode = vae.decode

    def recording_decode(latents, *args, **kwargs):
        decoded.append(latents.clone())
        return real_decode(latents, *args, **kwargs)

    monkeypatch.setattr(vae, "decode", recording_decode)
    with torch.no_grad():
        render_latent = vae.encode(render * 2 - 1).latent_dist.mode()
    distances = []
    for timestep in (20, 400, 1000):
        edit(tiny_editor, render, original, instruction, timestep)
        distances.append((decoded[-1] - render_latent).abs().mean().item())
    assert distances[0] < distances[1] < distances[2], distances


def test_guidance_scales_change_the_result(tiny_editor, instruction, scene_images):
    render, original = scene_images()
    base = edit(tiny_editor, render, original, instruction, 800)
    text = edit(tiny_editor, render, original, instruction, 800, guidance_scale=1.0)
    image = edit(tiny_editor, render, original, instruction, 800, image_guidance_scale=3.0)
    assert (base - text).abs().mean() > 1e-3
    assert (base - image).abs().mean() > 1e-3


def test_instruction_is_encoded_once_for_many_edits(scene_images):
    from backend.editing.loaders import load_editor

    editor = load_editor("tiny", max_side=32)
    calls = []
    handle = editor.components.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        embeddings = editor.encode_instruction("make it snowy")
        render, original = scene_images()
        for timestep in (30, 300, 600):
            edit(editor, render, original, embeddings, timestep)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert embeddings.text.shape == (1, 77, 32) and embeddings.instruction == "make it snowy"


@pytest.mark.parametrize("timestep", [-1, 0, 1001, 2.5, True])
def test_bad_timestep_is_rejected_by_name(tiny_editor, instruction, scene_images, timestep):
    render, original = scene_images()
    with pytest.raises(ValueError, match="timestep"):
        edit(tiny_editor, render, original, instruction, timestep)


def test_bad_inputs_are_rejected_by_name(tiny_editor, instruction, scene_images):
    render, original = scene_images()
    with pytest.raises(ValueError, match="original"):
        edit(tiny_editor, render, original[..., :16], instruction, 100)
    with pytest.raises(ValueError, match="render"):
        edit(tiny_editor, render[:, :1], original[:, :1], instruction, 100)
    with pytest.raises(ValueError, match="ddim_steps"):
        edit(tiny_editor, render, original, instruction, 100, steps=0)
    with pytest.raises(TypeError, match="encode_instruction"):
        edit(tiny_editor, render, original, "make it snowy", 100)  # type: ignore[arg-type]


def test_full_schedule_matches_diffusers_instruct_pix2pix_pipeline(tiny_editor, instruction, scene_images):
    """Regression anchor: at T = 1000 (the full schedule) the edit is what diffusers' own
    ``StableDiffusionInstructPix2PixPipeline`` computes with the same components, DDIM settings, guidance scales,
    s = num_inference_steps and starting latents (the noised render latent, built here independently)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from diffusers.utils.torch_utils import randn_tensor

    components = tiny_editor.components
    pipeline = StableDiffusionInstructPix2PixPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=components.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    render, original = scene_images(height=32, width=32, seed=3)
    steps, seed, text_scale, image_scale = 5, 11, 6.0, 1.8
    ours = edit(tiny_editor, render, original, instruction, 1000, seed=seed, steps=steps,
                guidance_scale=text_scale, image_guidance_scale=image_scale)

    vae, scheduler = components.vae, components.scheduler
    with torch.no_grad():
        render_latent = vae.encode(render * 2 - 1).latent_dist.mode() * vae.config["scaling_factor"]
    noise = randn_tensor(render_latent.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    scheduler.set_timesteps(steps)
    start = scheduler.timesteps[:1]
    assert int(start) == 801  # 1000 // 5 = 200: 801, 601, 401, 201, 1
    latents = scheduler.add_noise(render_latent, noise, start)
    theirs = pipeline(prompt_embeds=instruction.text, negative_prompt_embeds=instruction.unconditional,
                      image=original, num_inference_steps=steps, guidance_scale=text_scale,
                      image_guidance_scale=image_scale, latents=latents, output_type="pt").images
    assert theirs.shape == ours.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-5)
    # and the anchor is sensitive: another start, or another image condition, moves the result well past that
    shifted = edit(tiny_editor, render, original, instruction, 990, seed=seed, steps=steps,
                   guidance_scale=text_scale, image_guidance_scale=image_scale)
    assert (shifted - theirs).abs().max() > 1e-3
