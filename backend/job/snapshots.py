"""NeRF snapshots of a job: the iterations a user can keep, import as geometry, or start a new edit from.

The paper notes that the edited NeRF "varies in type and strength of edit over the course of optimization, and one
must select an iteration at which to terminate". A snapshot keeps one such iteration for good::

    snapshots/step-000031000/
      model.ckpt            the NeRF's weights (nerfstudio layout, no optimiser state)
      views/<image>.png     renders of a few training views (thumbnails, and what the NeRF looked like)
      export/               mesh and point cloud, once exported on request (export.json written last)
      export_requested.json while an export was asked for and not yet reported (re-made after a restart)
      snapshot.json         what it is (written last: a folder without it is an interrupted write)

No torch here: the server lists and deletes snapshots from its loop thread.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from backend import atomic

EXPORT_REQUESTED = "export_requested.json"
"""In a snapshot's folder while an export of it was asked for and not yet reported."""
FOLDER_PATTERN = re.compile(r"^step-(\d{9})$")
REASONS = ("reconstruction", "scheduled", "final", "stopped")
"""Why a snapshot was kept (the protocol's ``SnapshotReason``)."""


@dataclass
class SnapshotRecord:
    """``snapshot.json``."""

    step: int
    """Global NeRF step (reconstruction + editing)."""
    editing_step: int
    """Editing steps done (0: the reconstruction of the original scene)."""
    reason: str
    images_edited: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)
    """Training image name (as in the scene) -> render file, relative to the snapshot folder."""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    pinned: bool = False
    """Kept by the user: never rotated away."""


class BakedRecord(TypedDict):
    """One baked texture of a snapshot's export."""

    name: str
    """The surface's name (the client's key: the Blender mesh its UVs belong to)."""
    object_name: str
    texture: str
    """PNG, relative to the snapshot folder."""
    coverage: float
    """Fraction of the surface's texels a training camera saw (the rest were filled from their neighbours)."""


@dataclass
class SnapshotExport:
    """``export/export.json``: the exported geometry (paths relative to the snapshot folder)."""

    mesh: str | None
    point_cloud: str | None
    num_points: int = 0
    num_vertices: int = 0
    num_faces: int = 0
    bounds_min: list[float] | None = None
    bounds_max: list[float] | None = None
    textured_mesh: str | None = None
    """The UV-textured mesh (OBJ), when the job asked for one."""
    extra_files: list[str] = field(default_factory=list)
    """Files the textured mesh needs beside it (its material and texture)."""
    baked: list[BakedRecord] = field(default_factory=list)
    """Textures baked onto the scene's surfaces (the user's selected objects)."""
    geometry_error: str | None = None
    """Why there is no mesh or point cloud, in words (what was exported besides stands)."""


class SnapshotStore:
    """The ``snapshots/`` folder of one job."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, step: int) -> Path:
        return self.root / f"step-{step:09d}"

    def model(self, step: int) -> Path:
        return self.folder(step) / "model.ckpt"

    def view_path(self, step: int, image_name: str) -> Path:
        return self.folder(step) / "views" / Path(image_name).with_suffix(".png").name

    def export_dir(self, step: int) -> Path:
        return self.folder(step) / "export"

    def write_record(self, record: SnapshotRecord) -> None:
        """Last, after the weights and renders: it marks the snapshot complete."""
        atomic.write_json(self.folder(record.step) / "snapshot.json", asdict(record))

    def steps(self) -> list[int]:
        """Steps of the complete snapshots, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(match.group(1)) for path in self.root.iterdir()
                      if (match := FOLDER_PATTERN.match(path.name)) and (path / "snapshot.json").is_file())

    def read(self, step: int) -> SnapshotRecord | None:
        """The record, or None for a missing, incomplete or damaged snapshot."""
        try:
            data = json.loads((self.folder(step) / "snapshot.json").read_text(encoding="utf-8"))
            return SnapshotRecord(**{key: data[key] for key in SnapshotRecord.__dataclass_fields__ if key in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def records(self) -> list[SnapshotRecord]:
        return [record for step in self.steps() if (record := self.read(step)) is not None]

    def reconstruction(self) -> SnapshotRecord | None:
        """The snapshot of the NeRF before any edit (the original scene, or the NeRF the job started from)."""
        return next((record for record in self.records() if record.reason == "reconstruction"), None)

    def newest(self) -> SnapshotRecord | None:
        records = self.records()
        return records[-1] if records else None

    def read_export(self, step: int) -> SnapshotExport | None:
        """The cached export, or None when the snapshot was not exported (or the export was interrupted)."""
        try:
            data: dict[str, Any] = json.loads((self.export_dir(step) / "export.json").read_text(encoding="utf-8"))
            return SnapshotExport(**{key: data[key] for key in SnapshotExport.__dataclass_fields__ if key in data})
        except (OSError, ValueError, TypeError):
            return None

    def write_export(self, step: int, export: SnapshotExport) -> None:
        atomic.write_json(self.export_dir(step) / "export.json", asdict(export))

    def request_export(self, step: int) -> None:
        """Note that an export of ``step`` was asked for: until its final report (:meth:`export_reported`), a
        restarted server knows it was interrupted (a kill -9 left its client waiting for a final event forever)."""
        atomic.write_json(self.folder(step) / EXPORT_REQUESTED, {"step": step})

    def export_reported(self, step: int) -> None:
        (self.folder(step) / EXPORT_REQUESTED).unlink(missing_ok=True)

    def interrupted_exports(self) -> list[int]:
        """Snapshots whose export was asked for and never reported (the server stopped or was killed meanwhile)."""
        return [step for step in self.steps() if (self.folder(step) / EXPORT_REQUESTED).is_file()]

    def size_bytes(self, step: int) -> int:
        """Disk space of one snapshot (weights, renders, exports)."""
        return folder_bytes(self.folder(step))

    def remove_incomplete(self) -> list[Path]:
        """Snapshot folders without ``snapshot.json`` (written last): writes a crash or a full disk interrupted,
        which no listing shows and no request can delete."""
        if not self.root.is_dir():
            return []
        removed = [path for path in self.root.iterdir()
                   if FOLDER_PATTERN.match(path.name) and not (path / "snapshot.json").is_file()]
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed

    def rotate(self, max_count: int, max_bytes: int, keep: Callable[[SnapshotRecord], bool]) -> list[SnapshotRecord]:
        """Delete the oldest scheduled snapshots until at most ``max_count`` remain, taking at most ``max_bytes``;
        never the reconstruction, final or stopped ones, the newest, pinned ones or those ``keep`` names. Returns
        those deleted."""
        records = self.records()
        sizes = {record.step: self.size_bytes(record.step) for record in records}
        rotatable = [record for record in records[:-1]
                     if record.reason == "scheduled" and not record.pinned and not keep(record)]
        deleted: list[SnapshotRecord] = []
        while rotatable and (len(records) - len(deleted) > max_count
                             or sum(sizes.values()) > max_bytes):
            oldest = rotatable.pop(0)
            self.delete(oldest.step)
            sizes.pop(oldest.step)
            deleted.append(oldest)
        return deleted

    def total_bytes(self) -> int:
        """Disk space of every snapshot of the job."""
        return folder_bytes(self.root)

    def delete(self, step: int) -> int:
        """Remove a snapshot; returns the bytes freed. The record goes first, so a crash mid-way leaves an
        incomplete folder that is no longer listed rather than a listed snapshot with missing files."""
        folder = self.folder(step)
        if not folder.is_dir():
            return 0
        freed = self.size_bytes(step)
        (folder / "snapshot.json").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        return freed


def folder_bytes(folder: Path) -> int:
    """Disk space of the files under ``folder`` (0 when missing); a file deleted meanwhile counts nothing."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total
