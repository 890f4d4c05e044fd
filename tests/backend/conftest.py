"""Fixtures shared by the backend test suites (engine, server): tiny scenes and an offline LPIPS backbone."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.scenes import TinyScene, make_tiny_scene


@pytest.fixture(scope="session")
def random_alexnet_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A TORCH_HOME holding RANDOM AlexNet weights where torchvision caches the pretrained ones.

    LPIPS (nerfacto's metric and in2n's loss) loads torchvision's pretrained AlexNet, which cannot be downloaded on
    the test machines. Tests only need the real code path to run, not meaningful perceptual distances, so this
    fixture writes a randomly initialised AlexNet state dict under the expected file name. It is a test-only
    stand-in: product code never creates it (it raises LpipsWeightsMissing instead).
    """
    import torch
    import torchvision
    from torchvision.models import AlexNet_Weights

    home = tmp_path_factory.mktemp("torch_home_random_alexnet")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(),
               checkpoints / Path(AlexNet_Weights.IMAGENET1K_V1.url).name)
    (home / "RANDOM_WEIGHTS_README.txt").write_text("Random AlexNet weights for offline tests. Not pretrained.\n")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = previous


@pytest.fixture
def tiny_scene_factory(tmp_path: Path) -> Callable[..., TinyScene]:
    """``tiny_scene_factory(num_views=10, size=32, ...)`` writes a scene under tmp_path and describes it."""
    counter = iter(range(1000))

    def make(**kwargs) -> TinyScene:
        return make_tiny_scene(tmp_path / f"scene{next(counter)}", **kwargs)

    return make
