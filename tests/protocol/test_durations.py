"""One duration format for users, on both sides (panel ETAs, CLI ETAs and estimates)."""

from __future__ import annotations

import math

import pytest

from protocol import format_duration


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (math.nan, ""), (-3, "0s"), (0.4, "0s"), (45, "45s"), (59.6, "1m 00s"), (75, "1m 15s"),
    (3599, "59m 59s"), (3600, "1h 00m"), (3725, "1h 02m"), (47 * 3600 + 59 * 60, "47h 59m"), (48 * 3600, "2.0 days"),
    (757 * 3600 + 40 * 60, "31.6 days"),
])
def test_durations_are_written_one_way(seconds, text):
    assert format_duration(seconds) == text
