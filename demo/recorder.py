"""Records what the add-on hears from the backend during the demo's edit: progress with losses, job states, logs and
the downloaded results. bpy-free.

The add-on keeps only the latest progress (the panel shows one line); the demo wants the whole loss curve. The
recorder sees every worker notice *on its way into* the add-on's own session state machine (it wraps
``SessionState.apply`` of the running add-on and passes every notice on unchanged), so the demo observes the real
code path instead of opening a second connection to the backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Progress phases whose steps are NeRF steps (and whose losses are plotted).
TRAINING_PHASES = ("reconstructing", "editing")

@dataclass(frozen=True)
class ProgressSample:
    phase: str
    step: int
    total_steps: int
    fraction: float
    elapsed_s: float
    losses: dict[str, float]
    images_edited: int
    wall_s: float
    """Seconds since the recorder started (the demo's clock)."""


@dataclass
class JobRecord:
    progress: list[ProgressSample] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    result_files: dict[str, Path] = field(default_factory=dict)
    """Downloaded artifact name -> local file."""
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Artifact name -> kind, size, sha256, metadata (as the server described it)."""
    job_id: str = ""
    errors: list[str] = field(default_factory=list)
    """Failed commands (upload, fetch...) as the add-on reported them."""

    def training_progress(self) -> list[ProgressSample]:
        """Samples of the phases whose steps are NeRF steps (:data:`TRAINING_PHASES`): the export's steps count rays
        shot, and the losses it reports are the last training ones."""
        return [sample for sample in self.progress if sample.phase in TRAINING_PHASES]

    def phase_offsets(self) -> dict[str, int]:
        """Phase -> what to add to its steps to count globally. A phase whose steps continue upwards from the
        previous phase's already counts globally (same offset); one that restarts its count is placed after the
        previous phase (its offset plus its ``total_steps``)."""
        offsets: dict[str, int] = {}
        previous: ProgressSample | None = None
        for sample in self.training_progress():
            if sample.phase not in offsets:
                if previous is None:
                    offsets[sample.phase] = 0
                elif sample.step >= previous.step:
                    offsets[sample.phase] = offsets[previous.phase]
                else:
                    offsets[sample.phase] = offsets[previous.phase] + max(previous.total_steps, previous.step)
            previous = sample
        return offsets

    def phase_starts(self) -> dict[str, int]:
        """Phase -> global step where it begins: 0 for the first; for later ones their offset when their count
        restarted, else their first reported step."""
        offsets = self.phase_offsets()
        starts: dict[str, int] = {}
        for sample in self.training_progress():
            if sample.phase in starts:
                continue
            counted_on = bool(starts) and offsets[sample.phase] == offsets[next(iter(starts))]
            starts[sample.phase] = offsets[sample.phase] + (sample.step if counted_on else 0)
        return starts

    def loss_series(self) -> dict[str, list[tuple[int, str, float]]]:
        """Loss name -> ``(global step, phase, value)`` points in arrival order, finite values only (global step:
        see :meth:`phase_offsets`). Only the training phases: the export's steps count rays shot, and the losses it
        reports are the last training ones."""
        offsets = self.phase_offsets()
        series: dict[str, list[tuple[int, str, float]]] = {}
        for sample in self.training_progress():
            step = offsets[sample.phase] + sample.step
            for name, value in sample.losses.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    series.setdefault(name, []).append((step, sample.phase, float(value)))
        return series

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "progress": [asdict(sample) for sample in self.progress],
            "states": self.states,
            "logs": self.logs[-200:],
            "errors": self.errors,
            "artifacts": self.artifacts,
            "loss_series": {name: [list(point) for point in points] for name, points in self.loss_series().items()},
            "phase_starts": self.phase_starts(),
        }


class Recorder:
    """Wraps an add-on ``SessionState`` so every notice it applies is also recorded here."""

    def __init__(self, messages: Any, worker_api: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.m, self.api = messages, worker_api
        """The protocol's message classes and the add-on's worker notices (passed in: the add-on's own modules)."""
        self.record = JobRecord()
        self._clock, self._start = clock, clock()

    def attach(self, state: Any) -> None:
        apply = state.apply

        def recording_apply(notice: Any, **kwargs: Any) -> Any:
            self.observe(notice)
            return apply(notice, **kwargs)

        state.apply = recording_apply

    def observe(self, notice: Any) -> None:
        api, m, record = self.api, self.m, self.record
        if isinstance(notice, api.JobStarted):
            record.job_id = notice.job_id
            record.states.append({"state": notice.state, "wall_s": self._now()})
        elif isinstance(notice, api.Failed):
            record.errors.append(f"{notice.action}: {notice.message}")
        elif isinstance(notice, api.ResultsFetched):
            record.result_files.update({name: Path(path) for name, path in notice.files.items()})
            for artifact in notice.artifacts:
                record.artifacts[artifact.name] = {"kind": artifact.kind, "size": artifact.size,
                                                   "sha256": artifact.sha256, "metadata": dict(artifact.metadata)}
        elif isinstance(notice, api.ServerEvent):
            content = notice.content
            if record.job_id and getattr(content, "job_id", record.job_id) != record.job_id:
                return
            if isinstance(content, m.JobProgressEvent):
                p = content.progress
                record.progress.append(ProgressSample(p.phase, p.step, p.total_steps, p.fraction, p.elapsed_s,
                                                      dict(p.losses), p.images_edited, self._now()))
            elif isinstance(content, m.JobStateEvent):
                record.states.append({"state": content.state, "message": content.message,
                                      "error_name": content.error_name, "error_message": content.error_message,
                                      "wall_s": self._now()})
            elif isinstance(content, m.JobLogEvent):
                record.logs.append(f"[{content.level}] {content.text}")

    def _now(self) -> float:
        return round(self._clock() - self._start, 3)
