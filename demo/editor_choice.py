"""Which editor the demo edits with: real InstructPix2Pix weights when they are on this machine, else the SIMULATED
editor (not InstructPix2Pix: it blends each view toward Blender's render of the intended edit, view-inconsistently,
so Iterative Dataset Update has real work to do), or the tiny random InstructPix2Pix when asked for (``--editor tiny``).

Nothing is downloaded: a local diffusers folder given with ``--editor PATH`` is checked, otherwise the Hugging Face
cache is searched for ``timbrooks/instruct-pix2pix`` (the layout ``huggingface_hub`` writes:
``<cache>/models--timbrooks--instruct-pix2pix/snapshots/<revision>/``). The LPIPS loss of the paper's ``in2n`` mode
needs torchvision's AlexNet weights; they are looked up in the torch hub cache the same way (file only, no import).
No bpy and no torch here: the demo decides before the backend starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HUB_MODEL_ID = "timbrooks/instruct-pix2pix"
"""The InstructPix2Pix checkpoint of the paper (diffusers format)."""
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
"""torchvision's ImageNet AlexNet weights (``AlexNet_Weights.IMAGENET1K_V1``), used by the LPIPS loss."""
REQUIRED_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
"""Sub-folders of a diffusers InstructPix2Pix folder the backend loads."""
WEIGHT_SUFFIXES = (".safetensors", ".bin")

TINY_NOTE = ("the demo edits with the TINY RANDOM InstructPix2Pix (--editor tiny), so the edit is NOT meaningful "
             "(random weights); every other step is the real product code path. For a real edit pass "
             f"--editor /path/to/instruct-pix2pix or put {HUB_MODEL_ID} in the Hugging Face cache "
             "(hf download timbrooks/instruct-pix2pix, about 5 GB).")


SIMULATED_NOTE = ("the demo edits with the SIMULATED editor, NOT InstructPix2Pix. For each view it returns a "
                  "view-inconsistent blend (jitter, blobs, small shifts; stronger at higher noise) toward Blender's "
                  "own render of the intended edit (the yellow sphere as blue glass), so Iterative Dataset Update has "
                  "real work to do; the instruction text is not read. For a real edit pass --editor "
                  f"/path/to/instruct-pix2pix or put {HUB_MODEL_ID} in the Hugging Face cache (hf download "
                  f"{HUB_MODEL_ID}, about 5 GB).")


class EditorChoiceError(ValueError):
    """``--editor`` names something that is not usable; the message says what is missing."""


@dataclass(frozen=True)
class EditorChoice:
    source: str
    """``EditorConfig.source`` for the backend: ``simulated``, ``tiny`` or a local diffusers folder."""
    real: bool
    """True for real InstructPix2Pix weights (the edit follows the instruction)."""
    origin: str
    """Where the editor came from, for the summary: ``--editor``, ``huggingface cache``, ``simulated`` or ``tiny``."""
    note: str = ""
    """Shown in the output when the editor is not the real InstructPix2Pix."""

    @property
    def simulated(self) -> bool:
        """The simulated editor: the demo renders a target image per view for it."""
        return self.source == "simulated"


def hub_cache_dirs(environ: dict[str, str] | None = None) -> list[Path]:
    """Folders ``huggingface_hub`` may keep models in, in its own order of precedence."""
    env = os.environ if environ is None else environ
    dirs = []
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(variable):
            dirs.append(Path(env[variable]))
    if env.get("HF_HOME"):
        dirs.append(Path(env["HF_HOME"]) / "hub")
    cache_home = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    dirs.append(cache_home / "huggingface" / "hub")
    return list(dict.fromkeys(dirs))


def missing_parts(folder: Path) -> list[str]:
    """What a diffusers InstructPix2Pix folder lacks (empty when complete): model_index.json and weight files."""
    missing = [] if (folder / "model_index.json").is_file() else ["model_index.json"]
    for part in REQUIRED_PARTS:
        sub = folder / part
        if not sub.is_dir():
            missing.append(f"{part}/")
        elif part in ("unet", "vae", "text_encoder") and not any(
                path.name.endswith(WEIGHT_SUFFIXES) and path.is_file() for path in sub.iterdir()):
            missing.append(f"{part}/ weights")
    return missing


def find_cached_snapshot(model_id: str = HUB_MODEL_ID, environ: dict[str, str] | None = None) -> Path | None:
    """The complete cached snapshot of ``model_id`` (the one ``refs/main`` points at first), or None."""
    for cache in hub_cache_dirs(environ):
        repo = cache / ("models--" + model_id.replace("/", "--"))
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        ref = repo / "refs" / "main"
        if ref.is_file():
            head = snapshots / ref.read_text().strip()
            candidates = [head] + [c for c in candidates if c != head]
        for snapshot in candidates:
            if snapshot.is_dir() and not missing_parts(snapshot):
                return snapshot
    return None


SIMULATED = EditorChoice("simulated", False, "simulated (no InstructPix2Pix weights on this machine)",
                         "no InstructPix2Pix weights on this machine: " + SIMULATED_NOTE)


def choose_editor(explicit: str | None = None, environ: dict[str, str] | None = None) -> EditorChoice:
    """``--editor PATH`` (must be a complete diffusers folder), ``--editor tiny|simulated``, else the cache, else the
    simulated editor."""
    if explicit == "tiny":
        return EditorChoice("tiny", False, "tiny (random, asked for)", TINY_NOTE)
    if explicit == "simulated":
        return EditorChoice("simulated", False, "simulated (asked for)", SIMULATED_NOTE)
    if explicit:
        folder = Path(explicit).expanduser().resolve()
        if not folder.is_dir():
            raise EditorChoiceError(f"--editor: {folder} is not a folder (expected a diffusers InstructPix2Pix folder)")
        missing = missing_parts(folder)
        if missing:
            raise EditorChoiceError(f"--editor: {folder} is not a complete diffusers InstructPix2Pix folder; "
                                    f"missing {', '.join(missing)}")
        return EditorChoice(str(folder), True, "--editor")
    snapshot = find_cached_snapshot(HUB_MODEL_ID, environ)
    if snapshot is not None:
        return EditorChoice(str(snapshot), True, f"huggingface cache ({HUB_MODEL_ID})")
    return SIMULATED


def alexnet_weights_present(environ: dict[str, str] | None = None) -> bool:
    """Whether torchvision would find AlexNet's weights without downloading (``$TORCH_HOME/hub/checkpoints``)."""
    env = os.environ if environ is None else environ
    if env.get("TORCH_HOME"):
        torch_home = Path(env["TORCH_HOME"])
    else:
        cache_home = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
        torch_home = cache_home / "torch"
    return (torch_home / "hub" / "checkpoints" / ALEXNET_FILE).is_file()
