"""Engine progress -> protocol events: a value the protocol cannot encode is never stored or announced (issue 22,
item 1: one such progress made every client's job list answer InternalError until a restart)."""

from __future__ import annotations

from typing import Any

from backend.job.types import Progress
from backend.server.jobs.events import JobEvents
from protocol import messages as m
from protocol import schema


def events(published: list[Any]) -> JobEvents:
    return JobEvents("job-1", engine=None, cameras=[], preview=m.PreviewSettings(enabled=False),  # type: ignore[arg-type]
                     publish=lambda event, buffers: published.append(event), on_state=lambda state, detail: None,
                     budget=0.1)


def test_progress_the_protocol_cannot_encode_is_neither_stored_nor_published():
    published: list[Any] = []
    job = events(published)
    job.callbacks().on_progress(Progress("editing", 120, 200, 20, 100, {"rgb_loss": 0.1}, 5.0))
    assert job.progress is not None and job.progress.step == 20 and len(published) == 1
    schema.encode(m.JobProgressEvent(job_id="job-1", progress=job.progress))  # what a job list sends

    job.callbacks().on_progress(Progress("editing", 90, 200, -10, 100, {"rgb_loss": 0.1}, 5.0))  # a negative step
    assert job.progress.step == 20 and len(published) == 1  # the last good progress stays, nothing announced
