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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable


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

    def phase_starts(self) -> dict[str, int]:
        """Phase -> global step where it begins: phases run one after the other and each restarts its own step
        count, so a phase starts where the previous ones' ``total_steps`` add up to."""
        starts: dict[str, int] = {}
        totals: dict[str, int] = {}
        for sample in self.progress:
            if sample.phase not in starts:
                starts[sample.phase] = sum(totals.values())
            totals[sample.phase] = max(totals.get(sample.phase, 0), sample.total_steps)
        return starts

    def loss_series(self) -> dict[str, list[tuple[int, str, float]]]:
        """Loss name -> ``(global step, phase, value)`` points in arrival order, finite values only; the global step
        is the phase's start (:meth:`phase_starts`) plus its own step."""
        starts = self.phase_starts()
        series: dict[str, list[tuple[int, str, float]]] = {}
        for sample in self.progress:
            step = starts[sample.phase] + sample.step
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
