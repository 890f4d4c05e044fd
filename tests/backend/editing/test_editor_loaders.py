"""Loading editors: a local diffusers folder (the real from_pretrained path), missing weights offline, memory modes,
and the full-size random architecture."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from backend.editing.components import full_random_components, tiny_components
from backend.editing.loaders import EditorWeightsMissing, load_editor
from backend.editing.memory import EditorPlacement, placement_for

pytestmark = pytest.mark.timeout(180)
REPO_ROOT = Path(__file__).resolve().parents[3]


def quick_edit(editor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    render, original = torch.rand(2, 1, 3, 24, 40, generator=generator)
    embeddings = editor.encode_instruction("make it autumn")
    return editor.edit(render, original, embeddings, timestep=700, guidance_scale=7.5, image_guidance_scale=1.5,
                       ddim_steps=4, generator=torch.Generator().manual_seed(seed))


def test_local_diffusers_folder_loads_the_same_model(tmp_path):
    components = tiny_components()
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(components, name).save_pretrained(tmp_path / name)
    from_folder = load_editor(str(tmp_path), max_side=32)
    assert from_folder.components.unet.config.in_channels == 8
    assert torch.equal(quick_edit(from_folder), quick_edit(load_editor("tiny", max_side=32)))


def test_folder_without_weights_names_what_is_missing(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(EditorWeightsMissing, match="lacks vae, text_encoder, tokenizer, scheduler"):
        load_editor(str(tmp_path))
    with pytest.raises(EditorWeightsMissing, match="does not exist"):
        load_editor(str(tmp_path / "nowhere"))


def test_folder_with_broken_weights_gives_the_typed_error(tmp_path):
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / name).mkdir()  # folders present, files absent (e.g. an interrupted copy)
    with pytest.raises(EditorWeightsMissing, match="diffusers InstructPix2Pix model"):
        load_editor(str(tmp_path))


@pytest.mark.timeout(300)
def test_offline_without_cached_weights_says_what_to_download(tmp_path):
    """The real path a user takes: a hub id, HF_HUB_OFFLINE=1, an empty Hugging Face cache (fresh process, since
    huggingface_hub reads its environment at import)."""
    script = textwrap.dedent("""
        import sys
        from backend.editing.loaders import EditorWeightsMissing, load_editor
        try:
            load_editor("timbrooks/instruct-pix2pix", device="cpu")
        except EditorWeightsMissing as error:
            print("MESSAGE:", error)
            sys.exit(3)
        print("loaded?!")
    """)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), IN2N_CACHE_DIR=str(tmp_path / "in2n"),
               PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    message = result.stdout
    assert "hf download timbrooks/instruct-pix2pix" in message
    assert str(tmp_path / "hf") in message  # names the cache it looked in
    assert "HF_HUB_OFFLINE" in message and "'tiny'" in message
    assert "Traceback" not in result.stderr


def test_unknown_memory_mode_is_rejected():
    with pytest.raises(ValueError, match="memory_mode"):
        load_editor("tiny", memory_mode="huge")


@pytest.mark.parametrize("mode", ["in2n", "in2n-small", "in2n-tiny"])
def test_memory_modes_on_the_cpu_run_fp32_without_offload(mode):
    assert placement_for(mode, "cpu") == EditorPlacement(torch.device("cpu"), torch.float32, cpu_offload=False)


def test_memory_modes_on_cuda_choose_fp16_with_offload_for_small_and_tiny():
    # in2n: fp32 weights, UNet under fp16 autocast like the reference inside nerfstudio's CUDA autocast
    assert placement_for("in2n", "cuda") == EditorPlacement(torch.device("cuda"), torch.float32, autocast=True)
    for mode in ("in2n-small", "in2n-tiny"):
        assert placement_for(mode, "cuda:0") == EditorPlacement(torch.device("cuda:0"), torch.float16, True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_small_mode_offloads_fp16_networks_and_edits_on_the_gpu():
    editor = load_editor("tiny", device="cuda", memory_mode="in2n-small", max_side=32)
    assert editor.components.unet.dtype == torch.float16
    render = torch.rand(1, 3, 24, 40, device="cuda")
    out = editor.edit(render, render.clone(), editor.encode_instruction("make it autumn"), timestep=500,
                      guidance_scale=7.5, image_guidance_scale=1.5, ddim_steps=4,
                      generator=torch.Generator().manual_seed(0))
    assert out.device == render.device and out.shape == render.shape and torch.isfinite(out).all()
    full = load_editor("tiny", device="cuda", memory_mode="in2n", max_side=32)
    assert full.components.unet.dtype == torch.float32 and full.components.unet.device.type == "cuda"


def test_full_random_is_the_instruct_pix2pix_architecture():
    """Built on the meta device (no memory, no time): the parameter counts of timbrooks/instruct-pix2pix's
    networks, i.e. the SD 1.5 UNet plus 4 extra input channels (4 * 320 * 3 * 3 = 11,520 weights), the SD VAE and
    the CLIP ViT-L/14 text encoder."""
    components = full_random_components("meta")
    sd15_unet = 859_520_964
    assert components.num_parameters() == {"unet": sd15_unet + 4 * 320 * 3 * 3, "vae": 83_653_863,
                                           "text_encoder": 123_060_480}
    assert components.unet.config.in_channels == 8 and components.unet.config.cross_attention_dim == 768
    assert components.text_encoder.config.hidden_size == 768


def test_a_text_to_image_unet_is_rejected_as_editor():
    """A plain Stable Diffusion UNet (4 input channels) cannot take the image condition: say so, by field."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from backend.editing.ip2p import InstructPix2PixEditor

    components = tiny_components()
    components.unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, in_channels=4,
                                           out_channels=4, cross_attention_dim=32,
                                           down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                           up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    with pytest.raises(ValueError, match="in_channels"):
        InstructPix2PixEditor(components, placement_for("in2n", "cpu"))
