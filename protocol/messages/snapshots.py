"""NeRF snapshots of a job (protocol 2.0): list them, export one as geometry on request, delete old ones.

A snapshot (see :class:`~protocol.messages.edit.SnapshotSettings`) is kept on the server's disk with the job, so it
survives restarts of the server and of Blender. Its renders and, once exported, its mesh and point cloud are
artifacts fetched with ``result_fetch_request`` like a finished job's results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..schema import bounded, limit
from .edit import ArtifactInfo, check_job_id
from .registry import message

SnapshotReason = Literal["reconstruction", "scheduled", "final", "stopped"]
"""Why a snapshot was kept: after reconstruction (the original scene), every ``every_n_steps`` editing steps, where
the job finished, or where it was stopped (cancelled, or the server shut down)."""
ExportState = Literal["queued", "running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class NerfSnapshotInfo:
    step: int = field(metadata=limit(ge=0))
    """Global NeRF step (reconstruction + editing) of the snapshot; names it in requests."""
    editing_step: int = field(metadata=limit(ge=0))
    """Editing steps done at that point (0: the reconstruction of the original scene)."""
    reason: SnapshotReason
    images_edited: int = bounded(0, ge=0)
    losses: dict[str, float] = bounded({})
    created: str = ""
    """ISO-8601 UTC."""
    size_bytes: int = bounded(0, ge=0)
    """Disk space of the snapshot on the server (weights, renders, exports)."""
    views: list[ArtifactInfo] = field(default_factory=list)
    """Renders of the snapshot's views (``metadata.view_camera_index``): thumbnails."""
    geometry: list[ArtifactInfo] = field(default_factory=list)
    """Mesh and point cloud, once exported (``nerf_snapshot_export_request``); empty before."""
    pinned: bool = False
    """Kept by the user (``nerf_snapshot_pin_request``): never rotated away (protocol 2.4)."""


@message("nerf_snapshot_list_request", "request")
@dataclass(frozen=True)
class NerfSnapshotListRequest:
    job_id: str

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("nerf_snapshot_list_reply", "reply")
@dataclass(frozen=True)
class NerfSnapshotListReply:
    job_id: str
    snapshots: list[NerfSnapshotInfo] = field(default_factory=list)
    """Oldest first."""


@message("nerf_snapshot_export_request", "request")
@dataclass(frozen=True)
class NerfSnapshotExportRequest:
    """Export a snapshot's mesh and point cloud (while its job runs or after it ended). Answered at once; progress
    and the result come as ``nerf_snapshot_export`` events. An export already made is reused."""

    job_id: str
    step: int = field(metadata=limit(ge=0))

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("nerf_snapshot_export_reply", "reply")
@dataclass(frozen=True)
class NerfSnapshotExportReply:
    job_id: str
    step: int
    state: ExportState
    """``done`` when the export was already there (its artifacts are in the event that follows)."""


@message("nerf_snapshot_export", "event")
@dataclass(frozen=True)
class NerfSnapshotExportEvent:
    job_id: str
    step: int
    state: ExportState
    fraction: float = bounded(0.0, ge=0, le=1)
    eta_s: float | None = None
    message: str = bounded("", max_len=4000)
    """Why it failed, or what it is doing."""
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    """The mesh and point cloud, with ``done``."""


@message("nerf_snapshot", "event")
@dataclass(frozen=True)
class NerfSnapshotEvent:
    """A snapshot was kept (or its export finished, or it was deleted: ``deleted``)."""

    job_id: str
    snapshot: NerfSnapshotInfo
    deleted: bool = False


@message("nerf_snapshot_delete_request", "request")
@dataclass(frozen=True)
class NerfSnapshotDeleteRequest:
    """Delete a snapshot to free disk space (not the one a running export or a queued chained edit uses)."""

    job_id: str
    step: int = field(metadata=limit(ge=0))

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("nerf_snapshot_delete_reply", "reply")
@dataclass(frozen=True)
class NerfSnapshotDeleteReply:
    job_id: str
    step: int
    freed_bytes: int = bounded(0, ge=0)


@message("nerf_snapshot_pin_request", "request")
@dataclass(frozen=True)
class NerfSnapshotPinRequest:
    """Keep a snapshot for good: a pinned one is never rotated away by its job (protocol 2.4)."""

    job_id: str
    step: int = field(metadata=limit(ge=0))
    pinned: bool = True
    """False: unpin (it may be rotated away again, oldest first)."""

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("nerf_snapshot_pin_reply", "reply")
@dataclass(frozen=True)
class NerfSnapshotPinReply:
    job_id: str
    step: int
    pinned: bool
