"""The editor's working size: bounded, multiples of 8, aspect ratio kept; resizing is exact at the same size."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.editing.ip2p import resize
from backend.editing.sizes import working_size

pytestmark = pytest.mark.timeout(60)


@settings(max_examples=300, deadline=None)
@given(height=st.integers(1, 4000), width=st.integers(1, 4000), max_side=st.integers(8, 1024))
def test_working_size_is_bounded_multiple_of_8_and_keeps_the_aspect_ratio(height, width, max_side):
    h, w = working_size(height, width, max_side)
    assert h % 8 == 0 and w % 8 == 0 and h >= 8 and w >= 8
    assert max(h, w) <= max(8, max_side)
    scale = min(1.0, max_side / max(height, width))
    # Each side is within half a multiple of its exact scaled length (or clamped to the 8-pixel minimum/maximum).
    for side, exact in ((h, height * scale), (w, width * scale)):
        assert abs(side - exact) <= 4 or side == 8 or side == max_side // 8 * 8


def test_known_sizes():
    assert working_size(512, 512, 512) == (512, 512)
    assert working_size(1080, 1920, 512) == (288, 512)  # 1080 * 512 / 1920 = 288
    assert working_size(61, 47, 512) == (64, 48)  # small images are not enlarged beyond rounding to 8


def test_working_size_rejects_empty_images():
    with pytest.raises(ValueError, match="size"):
        working_size(0, 10, 512)


def test_resize_is_identity_at_the_same_size_and_round_trips_smooth_images():
    image = torch.rand(2, 3, 40, 24)
    assert resize(image, (40, 24)) is image
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4), size=(96, 64), mode="bilinear")
    back = resize(resize(smooth, (48, 32)), (96, 64))
    assert back.shape == smooth.shape
    assert (back - smooth).abs().mean() < 0.02
