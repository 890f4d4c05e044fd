"""Fixtures of the editor tests: one tiny random InstructPix2Pix editor per module, single-threaded torch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from backend.editing.ip2p import InstructionEmbeddings, InstructPix2PixEditor
from backend.editing.loaders import load_editor


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a 2-core machine with another busy process torch's
    default two threads made one tiny UNet forward 30x slower (measured: 3.7 s vs 0.12 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_editor(single_torch_thread: None) -> InstructPix2PixEditor:
    return load_editor("tiny", device="cpu", memory_mode="in2n", max_side=64)


@pytest.fixture(scope="module")
def instruction(tiny_editor: InstructPix2PixEditor) -> InstructionEmbeddings:
    return tiny_editor.encode_instruction("turn the bear into a polar bear")


def make_scene_images(batch: int = 1, height: int = 32, width: int = 32,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth render and a different smooth original in [0, 1] (smooth, like real photos, not white noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(2, batch, 3, 4, 4, generator=generator)
    images = torch.nn.functional.interpolate(coarse.flatten(0, 1), size=(height, width), mode="bilinear")
    render, original = images.unflatten(0, (2, batch))
    return render.contiguous(), original.contiguous()


@pytest.fixture
def scene_images():
    """``scene_images(batch, height, width, seed) -> (render, original)``."""
    return make_scene_images
