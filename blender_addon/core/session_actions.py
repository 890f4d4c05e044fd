"""What :class:`~.session.SessionState` asks the bpy shell to do (its *actions*), and the preview image it shows.

Plain data: the state machine returns them, the shell carries them out, tests compare them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class PreviewSnapshot:
    step: int
    width: int
    height: int
    pixels: NDArray[np.float32]
    camera_index: int | None = None
    """The uploaded camera it shows the view of (None: the camera the add-on asked for)."""


@dataclass(frozen=True)
class Report:
    level: Literal["INFO", "WARNING", "ERROR"]
    message: str


@dataclass(frozen=True)
class ShowPreview:
    snapshot: PreviewSnapshot


@dataclass(frozen=True)
class ImportResults:
    job_id: str
    files: dict[str, Path]
    kinds: dict[str, str]
    """Artifact name -> kind (mesh, pointcloud, image)."""
    camera_index: dict[str, int] = field(default_factory=dict)
    """Edited image name -> index of the uploaded camera it belongs to (from the artifact's metadata)."""
    snapshot_step: int | None = None
    """The snapshot whose geometry this is (None: the job's final result)."""
    baked: dict[str, Path] = field(default_factory=dict)
    """Surface name (the kept copy of the object it was baked onto) -> its baked texture."""


@dataclass(frozen=True)
class RememberJob:
    """Store the job id in the .blend (so reopening the file and connecting follows it again)."""

    job_id: str


@dataclass(frozen=True)
class SendCommand:
    """Hand a command to the worker (e.g. fetch a snapshot's files once its export is done)."""

    command: Any


@dataclass(frozen=True)
class ShowThumbnail:
    step: int
    path: Path


@dataclass(frozen=True)
class ShowInstructionGrid:
    preview: Any
    """``steering.InstructionPreviewView`` with its grid."""


Action = Report | ShowPreview | ImportResults | RememberJob | SendCommand | ShowThumbnail | ShowInstructionGrid
