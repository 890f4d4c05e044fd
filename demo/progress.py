"""What the demo prints while it runs: its own lines, the panel's progress with the latest losses, stage times."""

from __future__ import annotations

import time
from typing import Any

from demo.recorder import Recorder


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


SHOWN_LOSSES = ("loss", "psnr", "lpips_loss")
"""Progress lines show these (the loss plot has them all)."""


class ProgressPrinter:
    """One stdout line when the phase changes and at most every ``interval_s`` otherwise: the panel's own progress
    text plus the latest losses."""

    def __init__(self, state: Any, recorder: Recorder, interval_s: float = 3.0) -> None:
        self.state, self.recorder, self.interval_s = state, recorder, interval_s
        self._last_time, self._last_phase, self._last_text = 0.0, "", ""

    def __call__(self) -> None:
        text = self.state.progress_text()
        job = self.state.job
        phase = job.phase if job is not None else ""
        now = time.monotonic()
        if not text or text == self._last_text or (phase == self._last_phase and now - self._last_time < self.interval_s):
            return
        progress = self.recorder.record.progress
        latest = progress[-1].losses if progress else {}
        shown = [name for name in SHOWN_LOSSES if name in latest]
        losses = ", ".join(f"{name} {latest[name]:.4g}" for name in shown)
        edits = f", {progress[-1].images_edited} edits" if progress and progress[-1].images_edited else ""  # edits, not distinct views
        say(f"{text}{edits}{' | ' + losses if losses else ''}")
        self._last_time, self._last_phase, self._last_text = now, phase, text


class Laps:
    """Wall time of each stage, in seconds."""

    def __init__(self) -> None:
        self.started = self._last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now

    def total(self) -> float:
        return round(time.monotonic() - self.started, 2)
