"""The backend's one float-to-8-bit conversion: rounding to nearest, clipping, NaN, numpy and torch alike."""

from __future__ import annotations

import numpy as np
import torch

from backend.pixels import to_uint8


def test_values_round_to_nearest_and_out_of_range_or_nan_values_are_clipped():
    values = np.array([0.0, 0.5 / 255, 0.49 / 255, 1.0, 254.5 / 255, -0.2, 1.7, np.nan, np.inf])
    assert to_uint8(values).tolist() == [0, 1, 0, 255, 255, 0, 255, 0, 255]


def test_a_tensor_with_gradients_gives_the_same_bytes_as_its_array():
    image = torch.rand(3, 5, 4, requires_grad=True)
    converted = to_uint8(image)
    assert converted.dtype == np.uint8 and converted.shape == (3, 5, 4)
    assert np.array_equal(converted, to_uint8(image.detach().numpy()))
