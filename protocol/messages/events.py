"""Events the server pushes to subscribed clients (no reply). ``parent_header`` is the request that started the job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..schema import limit
from ..signing import BufferLike
from .edit import ArtifactInfo, JobState, Progress
from .registry import expect_buffers, message
from .scene import ImageInfo


@message("job_state", "event")
@dataclass(frozen=True)
class JobStateEvent:
    job_id: str
    state: JobState
    queue_position: int | None = None
    message: str = ""
    error_name: str | None = None
    """For ``failed``: a stable error name, e.g. ``OutOfMemory``."""
    error_message: str | None = None


@message("job_progress", "event")
@dataclass(frozen=True)
class JobProgressEvent:
    job_id: str
    progress: Progress


@message("job_preview", "event")
@dataclass(frozen=True)
class JobPreviewEvent:
    """One rendered preview; buffer 0 holds the pixels (row 0 = top), usually uint8 RGB or RGBA."""

    job_id: str
    step: int = field(metadata=limit(ge=0))
    image: ImageInfo
    camera_index: int | None = None
    """Index into the scene's cameras when the preview camera is one of them."""

    def check_buffers(self, buffers: list[BufferLike]) -> None:
        expect_buffers(buffers, [self.image.nbytes])


@message("job_log", "event")
@dataclass(frozen=True)
class JobLogEvent:
    text: str = field(metadata=limit(max_len=16384))
    level: Literal["debug", "info", "warning", "error"] = "info"
    job_id: str | None = None
    time: str = ""


@message("job_result", "event")
@dataclass(frozen=True)
class JobResultEvent:
    """Results are ready to fetch."""

    job_id: str
    artifacts: list[ArtifactInfo] = field(default_factory=list)
