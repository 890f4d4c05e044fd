"""The offline CLIP tokenizer gives exactly open_clip's token ids, and its cache folder is written atomically."""

from __future__ import annotations

import pytest

from backend.editing.clip_tokenizer import CLIP_VOCAB_SIZE, load_clip_tokenizer, open_clip_bpe_path

pytestmark = pytest.mark.timeout(120)

PROMPTS = [
    "a photo",
    "Turn the bear into a POLAR bear!",
    "make it look like Van Gogh's 'Starry Night' (1889), oil on canvas",
    "give him a cowboy hat",
    "",
    "naïve café — über 3.14 ×2 😀",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_clip_tokenizer(tmp_path_factory.mktemp("clip") / "tokenizer")


def test_ids_match_open_clip_for_real_prompts(tokenizer):
    open_clip = pytest.importorskip("open_clip")
    reference = open_clip.SimpleTokenizer(str(open_clip_bpe_path()))
    for prompt in PROMPTS:
        ours = tokenizer(prompt).input_ids
        theirs = [reference.sot_token_id] + reference.encode(prompt) + [reference.eot_token_id]
        assert ours == theirs, prompt


def test_padded_like_stable_diffusion(tokenizer):
    assert len(tokenizer) == CLIP_VOCAB_SIZE
    ids = tokenizer("a photo", padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    assert tokenizer.model_max_length == 77 and len(ids) == 77
    assert ids[0] == 49406 and ids[-1] == 49407  # start, then end-of-text as padding (SD's tokenizer config)
    long = tokenizer("bear " * 200, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[-1] == 49407


def test_cache_folder_is_reused_and_a_partial_one_rebuilt(tmp_path):
    folder = tmp_path / "tokenizer"
    first = load_clip_tokenizer(folder)
    stamp = (folder / "vocab.json").stat().st_mtime_ns
    load_clip_tokenizer(folder)
    assert (folder / "vocab.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    (folder / "merges.txt").unlink()  # as if a process died while writing by hand
    rebuilt = load_clip_tokenizer(folder)
    assert (folder / "merges.txt").is_file()
    assert rebuilt(PROMPTS[1]).input_ids == first(PROMPTS[1]).input_ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer"]  # no staging folders left behind
