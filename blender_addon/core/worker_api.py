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
class AuxFile:
    """An auxiliary image of a view, as a file the worker reads and uploads (``protocol.AuxUpload``)."""

    camera_index: int
    role: str
    path: Path



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
    images: list[NDArray[Any] | Path]
    """``H W C`` uint8 arrays (row 0 = top), or PNG / JPEG files: read in the worker thread and uploaded as they are
    (compressed), so the main thread neither decodes nor encodes them."""
    request: Any
    """``EditStartRequest`` with a placeholder ``scene_id`` (filled in after the upload)."""
    scene_name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    aux: list[Any] = field(default_factory=list)
    """``AuxFile`` (or ``protocol.AuxUpload``) images per view, e.g. the simulated editor's targets, uploaded after
    the main images."""
    meshes: list[Any] = field(default_factory=list)
    """``protocol.MeshUpload`` per selected object to bake the edit onto, uploaded last."""


@dataclass(frozen=True)
class StartChainedEdit:
    """Start an edit on an uploaded scene from an earlier job's snapshot (``request.start_from``): no upload."""

    request: Any


@dataclass(frozen=True)
class Estimate:
    """Ask the server how long an edit would take, and whether its settings pass the server's rules."""

    request: Any
    num_views: int
    width: int
    height: int


@dataclass(frozen=True)
class PreviewInstruction:
    """Edit one view in 2D for a grid of guidance scales (``protocol.messages.InstructionPreviewRequest``)."""

    request: Any
    """The request with a placeholder ``image`` (filled in from ``image``)."""
    image: Path
    """The view: a PNG / JPEG file (uploaded as it is)."""
    target: Path | None = None
    """The view's intended edit, for the simulated editor."""


@dataclass(frozen=True)
class CancelPreview:
    """Stop a 2D preview before its next diffusion step (its ``failed`` event says cancelled)."""

    preview_id: str


@dataclass(frozen=True)
class ListSnapshots:
    job_id: str


@dataclass(frozen=True)
class ExportSnapshot:
    """Ask the server to export a snapshot as geometry (the import follows its ``done`` event)."""

    job_id: str
    step: int


@dataclass(frozen=True)
class DeleteSnapshot:
    job_id: str
    step: int


@dataclass(frozen=True)
class PinSnapshot:
    """Keep a snapshot for good (never rotated away by its job), or let it go again."""

    job_id: str
    step: int
    pinned: bool


@dataclass(frozen=True)
class ContinueJob:
    job_id: str
    extra_steps: int


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
    """Import what arrives into the scene (Import result); False only downloads (e.g. snapshot renders)."""
    snapshot_step: int | None = None
    """The job's results (None), or those of its snapshot at this step (renders, exported geometry)."""
    names: tuple[str, ...] = ()
    """Only these artifacts (by name), when given."""
    baked: bool = False
    """Also the textures baked onto the uploaded objects (whatever ``kinds`` says)."""


@dataclass(frozen=True)
class SetPreview:
    job_id: str
    preview: Any
    """``protocol.messages.PreviewSettings``."""


@dataclass(frozen=True)
class Stop:
    """End the worker thread."""


Command = (Connect | Disconnect | StartEdit | StartChainedEdit | Estimate | PreviewInstruction | ListSnapshots
           | CancelPreview | ExportSnapshot | DeleteSnapshot | PinSnapshot | ContinueJob | Cancel | FetchResults | SetPreview | Stop)


# ---------------------------------------------------------------- notices (worker -> main thread)
@dataclass(frozen=True)
class Connected:
    url: str
    hello: Any
    """``protocol.messages.HelloReply``."""
    jobs: list[Any]
    """``JobSnapshot`` of every job the server knows (the client is subscribed to their events)."""


@dataclass(frozen=True)
class JobsListed:
    """The jobs listed again after the server dropped progress events this client read too slowly."""

    jobs: list[Any]
    """``JobSnapshot`` of every job the server knows."""


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
    snapshot_step: int | None = None


@dataclass(frozen=True)
class FetchProgress:
    name: str
    done_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Answered:
    """A request's reply the main thread wants to see (estimate, snapshot list, preview started, job continued,
    snapshot export accepted or deleted)."""

    content: Any


@dataclass(frozen=True)
class PreviewImage:
    """An ``instruction_preview`` event and its pixels (``H W 3`` uint8, row 0 = top)."""

    event: Any
    pixels: NDArray[np.uint8] | None


Notice = (Connected | JobsListed | Disconnected | Failed | UploadProgress | JobStarted | ServerEvent | PreviewReady
          | ResultsFetched | FetchProgress | Answered | PreviewImage)
