"""The real CLIP tokenizer, built offline from the BPE vocabulary that ships inside the ``open_clip_torch`` wheel.

Stable Diffusion / InstructPix2Pix use OpenAI's CLIP BPE tokenizer. The real model repositories carry it as
``tokenizer/vocab.json`` + ``merges.txt``; the random ``tiny`` and ``full-random`` editors have no repository, so
they get the same tokenizer from open_clip's ``bpe_simple_vocab_16e6.txt.gz``, converted the way open_clip's own
``SimpleTokenizer`` builds its encoder (so ids match token for token; tests check that).

Why a folder on disk: with transformers 5, ``CLIPTokenizer(vocab_file=..., merges_file=...)`` silently builds a
2-token tokenizer, while ``CLIPTokenizer.from_pretrained(folder)`` is the path every real model takes.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

CLIP_CONTEXT_LENGTH = 77
"""Tokens per prompt of every CLIP text encoder used by Stable Diffusion (padding / truncation length)."""
CLIP_VOCAB_SIZE = 49408
"""256 byte tokens, 256 end-of-word byte tokens, 48894 merges, start and end of text."""
_NUM_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
_FORMAT_VERSION = "1"
"""Bumped when the generated folder changes, so stale caches are rebuilt rather than trusted."""


def default_cache_dir() -> Path:
    """``$IN2N_CACHE_DIR/clip-tokenizer`` or ``~/.cache/in2n-blender/clip-tokenizer``."""
    root = os.environ.get("IN2N_CACHE_DIR") or Path.home() / ".cache" / "in2n-blender"
    return Path(root) / "clip-tokenizer"


def open_clip_bpe_path() -> Path:
    """The BPE merges file inside the installed ``open_clip`` package (located without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open_clip_torch is not installed; it provides the CLIP BPE vocabulary "
                           "(pip install open_clip_torch)")
    path = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise RuntimeError(f"open_clip_torch has no BPE vocabulary at {path}")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP reversible byte -> printable character table (byte-level BPE works on these characters)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in characters)))


def clip_vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """Vocabulary (token -> id) and merge rules ("a b" lines, by rank), exactly as open_clip orders them."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1:1 + _NUM_MERGES]  # line 0 is a version header
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"{bpe_path} gave {len(tokens)} tokens, expected {CLIP_VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}, merges


def write_tokenizer_folder(folder: Path, bpe_path: Path | None = None) -> None:
    """Write ``vocab.json``, ``merges.txt`` and a version stamp into ``folder`` atomically (all or nothing)."""
    vocab, merges = clip_vocab_and_merges(bpe_path or open_clip_bpe_path())
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    (staging / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (staging / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (staging / "FORMAT").write_text(_FORMAT_VERSION)
    try:
        os.replace(staging, folder)  # atomic for an absent or empty target
    except OSError:
        # Another process won the race (the target exists and is not empty): keep theirs, drop ours.
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()
        if not _is_complete(folder):
            raise


def _is_complete(folder: Path) -> bool:
    stamp = folder / "FORMAT"
    return stamp.is_file() and stamp.read_text() == _FORMAT_VERSION and (folder / "vocab.json").is_file() and (
        folder / "merges.txt").is_file()


def load_clip_tokenizer(cache_dir: Path | None = None) -> CLIPTokenizer:
    """The CLIP ViT-L/14 tokenizer (as in ``timbrooks/instruct-pix2pix/tokenizer``), built offline and cached."""
    folder = cache_dir or default_cache_dir()
    if not _is_complete(folder):
        if folder.exists():  # stale or partial: rebuild
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
        write_tokenizer_folder(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=CLIP_CONTEXT_LENGTH)
