"""What the job service's helpers (snapshot handlers, 2D previews) use of it, as a ``typing.Protocol``: they depend on
this small interface, the service satisfies it, and neither helper imports the service that builds it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from backend.engine import EditEngine

from ..core import Server
from .config import JobServiceConfig
from .editors import EditorCache
from .results import ArtifactIndex
from .store import JobRecord, JobStore


class JobServiceView(Protocol):
    server: Server
    config: JobServiceConfig
    store: JobStore
    index: ArtifactIndex
    editors: EditorCache
    records: dict[str, JobRecord]
    stop_running: threading.Event
    """Set when the running job is told to stop."""

    def record(self, job_id: str, field: str = "content.job_id") -> JobRecord:
        """The job's record; a ValidationError naming ``field`` for a job this server does not know."""

    def engine_of(self, job_id: str) -> EditEngine | None:
        """The engine of ``job_id`` while it runs (work can be handed to it between NeRF steps)."""

    def running_engine(self) -> EditEngine | None:
        """The running job's engine, if a job runs."""

    def job_starting_from(self, checkpoint: Path) -> str | None:
        """A queued or running job that starts from ``checkpoint``."""
