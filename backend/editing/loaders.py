"""Where an editor's weights come from: ``tiny``, ``full-random``, a Hugging Face model id, or a local folder; or
``simulated`` (no weights: the SIMULATED editor of :mod:`backend.editing.simulated`, for scenes that carry
ground-truth target images).

Real use: ``load_editor("timbrooks/instruct-pix2pix", device="cuda")`` loads the published InstructPix2Pix weights
through diffusers' ``from_pretrained``, i.e. the standard Hugging Face cache (``$HF_HOME/hub``, default
``~/.cache/huggingface/hub``). The first run downloads ~5 GB (unet, vae, text_encoder, tokenizer, scheduler);
to prepare an offline machine run ``hf download timbrooks/instruct-pix2pix`` once while online (older
huggingface_hub: ``huggingface-cli download ...``), or copy a diffusers folder and pass its path. Offline without
the weights, ``EditorWeightsMissing`` says exactly that, rather than a hub traceback.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import torch

from backend.editing.base import ImageEditor
from backend.editing.components import DDIM_SETTINGS, IP2PComponents, full_random_components, tiny_components
from backend.editing.ip2p import InstructPix2PixEditor
from backend.editing.memory import placement_for
from backend.editing.simulated import SOURCE as SIMULATED
from backend.editing.simulated import SimulatedInstructEditor, SimulatedTargetsMissing
from backend.scene import Scene
from protocol.messages import MemoryMode

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "timbrooks/instruct-pix2pix"
_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class EditorWeightsMissing(RuntimeError):
    """The editor's weights are not available (offline and not cached, or an incomplete local folder)."""


def load_editor(source: str, *, device: torch.device | str = "cpu", memory_mode: MemoryMode | str = "in2n",
                max_side: int = 512, scene: Scene | None = None) -> ImageEditor:
    """Build the editor: InstructPix2Pix, or the simulated editor.

    Args:
        source: ``tiny`` (random tiny model: tests, offline smoke runs), ``full-random`` (the real architecture with
            random weights: speed benchmarks), a Hugging Face model id (e.g. ``timbrooks/instruct-pix2pix``), a
            local diffusers folder (with ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``), or ``simulated``.
        device: where the editor computes.
        memory_mode: ``full`` (fp32), ``small`` / ``tiny`` (fp16 + model CPU offload on CUDA; fp32 on the CPU).
        max_side: longest side the editor works at.
        scene: the job's scene; the simulated editor reads its ground-truth targets from it.

    Raises:
        EditorWeightsMissing: a model id that is neither cached nor downloadable, or a folder lacking weights.
        SimulatedTargetsMissing: ``simulated`` for a scene without a target image per view.
    """
    if source == SIMULATED:
        if scene is None:
            raise SimulatedTargetsMissing("the simulated editor needs the job's scene (its target images)")
        logger.info("SIMULATED editor: blends toward the scene's %d target images (not InstructPix2Pix)",
                    scene.num_views)
        return SimulatedInstructEditor.from_scene(scene)
    placement = placement_for(memory_mode, device)
    started = time.perf_counter()
    if source == "tiny":
        components = tiny_components()
    elif source == "full-random":
        logger.info("building the full-size InstructPix2Pix architecture with random weights (~1.1B parameters)")
        # Built straight on the GPU unless offloading (then the networks live on the CPU).
        components = full_random_components("cpu" if placement.cpu_offload else placement.device)
    else:
        logger.info("loading InstructPix2Pix weights from %s", source)
        components = pretrained_components(source, torch_dtype=placement.dtype)
    editor = InstructPix2PixEditor(components, placement, max_side=max_side)
    logger.info("editor %r ready on %s (%s%s) in %.1f s", source, placement.device, placement.dtype,
                ", CPU offload" if placement.cpu_offload else "", time.perf_counter() - started)
    return editor


def pretrained_components(source: str, *, torch_dtype: torch.dtype = torch.float32) -> IP2PComponents:
    """The five components of a diffusers InstructPix2Pix folder or Hugging Face repository (no safety checker:
    edits are of the user's own scene). The scheduler is DDIM with the repository's noise schedule and the
    reference's DDIM settings (:data:`DDIM_SETTINGS`; the repository ships Euler ancestral)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(source).expanduser()
    looks_like_path = folder.is_absolute() or source.startswith((".", "~")) or folder.exists()
    if looks_like_path:
        if not folder.is_dir():
            raise EditorWeightsMissing(f"editor weights folder {str(folder)!r} does not exist; pass a diffusers "
                                       f"InstructPix2Pix folder (with {', '.join(_SUBFOLDERS)}) or a Hugging Face "
                                       f"model id such as {DEFAULT_MODEL_ID!r}")
        absent = [name for name in _SUBFOLDERS if not (folder / name).is_dir()]
        if absent:
            raise EditorWeightsMissing(f"editor weights folder {str(folder)!r} lacks {', '.join(absent)}: it must be "
                                       f"a diffusers InstructPix2Pix folder, e.g. a copy of {DEFAULT_MODEL_ID!r} "
                                       f"made with `hf download {DEFAULT_MODEL_ID} --local-dir <folder>`")
        source = str(folder)
    with warnings.catch_warnings():
        # diffusers passes a deprecated argument to huggingface_hub: noise in the user's log, not their problem.
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        try:
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=torch_dtype)
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch_dtype)
            text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=torch_dtype)
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
            # The folder's own scheduler config is Euler ancestral and lacks DDIM's keys, which would silently turn
            # on x0 clipping: pin the DDIM settings the reference uses (CompVis SD 1.4's DDIM config).
            scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", **DDIM_SETTINGS)
        except OSError as error:  # huggingface_hub's not-cached / not-found / connection errors are all OSErrors
            raise EditorWeightsMissing(_missing_message(source, looks_like_path, error)) from error
    return IP2PComponents(unet.eval(), vae.eval(), text_encoder.eval(), tokenizer, scheduler)


def _missing_message(source: str, is_folder: bool, error: Exception) -> str:
    if is_folder:
        return (f"could not load the InstructPix2Pix editor from folder {source!r}: {error}. The folder must hold a "
                f"diffusers InstructPix2Pix model ({', '.join(_SUBFOLDERS)}).")
    from huggingface_hub import constants

    offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    return (f"the InstructPix2Pix weights {source!r} are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and could not be downloaded{offline}. Download them once (~5 GB) on a machine with internet access: "
            f"`hf download {source}` (older huggingface_hub: `huggingface-cli download {source}`), or run once "
            f"online so diffusers caches them, or pass a local diffusers folder as the editor source. On a machine "
            f"without internet, HF_HUB_OFFLINE=1 skips the download retries. For a test run without weights use "
            f"the editor source 'tiny'. (diffusers: {type(error).__name__}: {str(error)[:300]})")
