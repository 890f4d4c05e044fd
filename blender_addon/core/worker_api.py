"""What the main thread asks the backend worker to do (commands) and what it hears back (notices).

Both are plain frozen dataclasses passed through ``queue.Queue``: the worker thread owns the socket, the main thread
owns Blender data, and nothing else is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .protocol_link import protocol

m = protocol.messages


# ---------------------------------------------------------------- commands (main thread -> worker)
@dataclass(frozen=True)
class Connect:
    """Connect with a connection file (``connection_file``) or explicit ``info``; then resume known jobs."""

    info: Any = None
    """A ``protocol.ConnectionInfo``, or None to read ``connection_file``."""
    connection_file: str = ""
    wait_s: float = 0.0
    """Keep retrying to read the connection file this long (a backend that is still starting)."""
    hello_timeout_s: float = 60.0
    """The first hello may wait for the server's GPU probe (it imports torch)."""
    process: Any = None
    """A just-started local backend (``subprocess.Popen``): stop waiting at once if it exits."""
    log_file: str = ""
    """That backend's log, quoted when it exits early."""


@dataclass(frozen=True)
class Disconnect:
    """Close the socket. Jobs keep running on the server; ``Connect`` picks them up again."""


@dataclass(frozen=True)
class StartEdit:
    """Upload a scene (cameras + images) then start an edit job on it."""

    cameras: list[Any]
    """``protocol.messages.Camera`` per image."""
    images: list[NDArray[Any]]
    """``H W C`` uint8 arrays, row 0 = top."""
    request: Any
    """``EditStartRequest`` with a placeholder ``scene_id`` (filled in after the upload)."""
    scene_name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    aux: list[Any] = field(default_factory=list)
    """``protocol.AuxUpload`` images per view (the simulated editor's targets), uploaded after the main images."""


@dataclass(frozen=True)
class Cancel:
    job_id: str


@dataclass(frozen=True)
class FetchResults:
    """Download artifacts of a finished job into ``folder`` (all of them when ``names`` is empty)."""

    job_id: str
    folder: Path
    kinds: tuple[str, ...] = ("mesh", "pointcloud", "image")
    import_files: bool = True
    """Import what arrives into the scene (Import result); False only downloads (e.g. the job's history renders)."""


@dataclass(frozen=True)
class SetPreview:
    job_id: str
    preview: Any
    """``protocol.messages.PreviewSettings``."""


@dataclass(frozen=True)
class Stop:
    """End the worker thread."""


Command = Connect | Disconnect | StartEdit | Cancel | FetchResults | SetPreview | Stop


# ---------------------------------------------------------------- notices (worker -> main thread)
@dataclass(frozen=True)
class Connected:
    url: str
    hello: Any
    """``protocol.messages.HelloReply``."""
    jobs: list[Any]
    """``JobSnapshot`` of every job the server knows (the client is subscribed to their events)."""


@dataclass(frozen=True)
class Disconnected:
    reason: str = ""
    """Empty when the user asked; else why the connection was lost."""


@dataclass(frozen=True)
class Failed:
    """A command failed; ``message`` is ready for a Blender report."""

    action: str
    message: str
    error_name: str = ""


@dataclass(frozen=True)
class UploadProgress:
    done_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class JobStarted:
    job_id: str
    state: str
    queue_position: int | None
    scene_id: str


@dataclass(frozen=True)
class ServerEvent:
    """A pushed ``job_state`` / ``job_progress`` / ``job_log`` / ``job_result`` / ``heartbeat`` content."""

    content: Any


@dataclass(frozen=True)
class PreviewReady:
    job_id: str
    step: int
    width: int
    height: int
    pixels: NDArray[np.float32]
    """Flat float32 RGBA, bottom row first: ready for ``Image.pixels.foreach_set``."""
    camera_index: int | None = None


@dataclass(frozen=True)
class ResultsFetched:
    job_id: str
    files: dict[str, Path]
    """Artifact name -> downloaded file."""
    artifacts: list[Any]
    """``ArtifactInfo`` of the downloaded files."""
    import_files: bool = True


@dataclass(frozen=True)
class FetchProgress:
    name: str
    done_bytes: int
    total_bytes: int


Notice = (Connected | Disconnected | Failed | UploadProgress | JobStarted | ServerEvent | PreviewReady
          | ResultsFetched | FetchProgress)
