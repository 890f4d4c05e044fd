"""What the panel shows to steer an edit: the followed job's NeRF snapshots (with their exports), the server's
estimate of an edit, and the 2D instruction preview grid. Updated by :class:`~.session.SessionState` from notices;
bpy-free like the rest of ``core``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .protocol_link import protocol

m = protocol.messages


@dataclass
class SnapshotView:
    info: Any
    """``NerfSnapshotInfo``."""
    export_state: str = ""
    """'' (not asked), queued, running, done, failed, cancelled."""
    fraction: float = 0.0
    eta_s: float | None = None
    message: str = ""
    importing: bool = False
    """The user pressed Import: fetch and import its geometry once exported."""
    thumbnail: Path | None = None

    @property
    def step(self) -> int:
        return int(self.info.step)

    def label(self) -> str:
        """``edit step 500 (12 edits), 37.2 MiB``."""
        what = "reconstruction" if self.info.reason == "reconstruction" else f"edit step {self.info.editing_step}"
        if self.info.reason in ("final", "stopped"):
            what += f" ({self.info.reason})"
        if self.info.pinned:
            what += ", pinned"
        return f"{what}, {self.info.images_edited} edits, {self.info.size_bytes / 2**20:.1f} MiB"

    def status(self) -> str:
        if self.export_state in ("queued", "running"):
            eta = f", ETA {self.eta_s:.0f} s" if self.eta_s is not None else ""
            return f"exporting {self.fraction:.0%}{eta}"
        if self.export_state == "failed":
            return f"export failed: {self.message}"
        return "exported" if self.info.geometry else ""


@dataclass
class InstructionPreviewView:
    preview_id: str
    count: int
    editor: str
    started: float = field(default_factory=time.monotonic)
    cells: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Cell index -> (text guidance, image guidance), as the cells arrive."""
    columns: list[float] = field(default_factory=list)
    rows: list[float] = field(default_factory=list)
    grid: NDArray[np.uint8] | None = None
    """The labelled grid (``H W 3``, row 0 = top)."""
    cell_width: int = 0
    cell_height: int = 0
    failed: str = ""
    first_cell_s: float | None = None
    """Seconds from the request to the first cell (shown, and what the closing note reports)."""

    @property
    def done(self) -> bool:
        return self.grid is not None or bool(self.failed)

    @property
    def cancelled(self) -> bool:
        """Stopped on request (the server's failure says ``cancelled``)."""
        return self.failed.endswith(": cancelled")

    def scales_at(self, x: float, y: float) -> tuple[float, float] | None:
        """The (text, image) guidance of the cell under pixel ``(x, y)`` of the grid (row 0 = top)."""
        if self.grid is None or not self.cell_width or not self.cell_height:
            return None
        column, row = int(x // self.cell_width), int(y // self.cell_height)
        if not (0 <= column < len(self.columns) and 0 <= row < len(self.rows)):
            return None
        return self.columns[column], self.rows[row]

    def progress_text(self) -> str:
        if self.cancelled:
            return "Preview cancelled"
        if self.failed:
            return f"Preview failed: {self.failed}"
        if self.grid is not None:
            return f"Preview: {self.count} edits ({self.editor}); pick a cell"
        return f"Preview: {len(self.cells)}/{self.count} edits ({self.editor})"


@dataclass
class Steering:
    snapshots: dict[int, SnapshotView] = field(default_factory=dict)
    """The followed job's snapshots by NeRF step."""
    estimate: Any = None
    """The newest ``EditEstimateReply``."""
    estimate_answers: int = 0
    """Estimate requests answered so far (a waiting task compares it with the count when it asked)."""
    estimate_error: str = ""
    """Why the newest estimate request failed (a setting the server refuses, named), or ''."""
    preview: InstructionPreviewView | None = None

    def sorted_snapshots(self) -> list[SnapshotView]:
        return [self.snapshots[step] for step in sorted(self.snapshots)]

    def set_snapshots(self, infos: list[Any]) -> list[int]:
        """Replace the list (a new job, or a reconnect); returns the steps that have no thumbnail yet."""
        kept = {step: view for step, view in self.snapshots.items()}
        self.snapshots = {}
        for info in infos:
            view = kept.get(int(info.step)) or SnapshotView(info)
            view.info = info
            self.snapshots[int(info.step)] = view
        return [step for step, view in self.snapshots.items() if view.thumbnail is None and view.info.views]

    def update_snapshot(self, event: Any) -> bool:
        """A ``nerf_snapshot`` event; True when the snapshot is new (its thumbnail is still to fetch)."""
        step = int(event.snapshot.step)
        if event.deleted:
            self.snapshots.pop(step, None)
            return False
        view = self.snapshots.get(step)
        if view is None:
            self.snapshots[step] = SnapshotView(event.snapshot)
            return bool(event.snapshot.views)
        view.info = event.snapshot
        return False

    def update_export(self, event: Any) -> SnapshotView | None:
        """A ``nerf_snapshot_export`` event; returns the snapshot when its export is done and the user is waiting
        to import it."""
        view = self.snapshots.get(int(event.step))
        if view is None:
            return None
        view.export_state, view.fraction, view.eta_s, view.message = (event.state, event.fraction, event.eta_s,
                                                                     event.message)
        if event.state == "done":
            if event.artifacts:
                fields = {name: getattr(view.info, name) for name in view.info.__dataclass_fields__}
                view.info = type(view.info)(**{**fields, "geometry": list(event.artifacts)})
            if view.importing:
                view.importing = False
                return view
        elif event.state in ("failed", "cancelled"):
            view.importing = False
        return None

    def start_preview(self, reply: Any) -> None:
        self.preview = InstructionPreviewView(reply.preview_id, reply.cells, reply.editor)

    def preview_event(self, event: Any, pixels: NDArray[np.uint8] | None) -> bool:
        """An ``instruction_preview`` event; True when the grid arrived."""
        preview = self.preview
        if preview is None or event.preview_id != preview.preview_id:
            return False
        if event.kind == "failed":
            preview.failed = event.message or "the backend could not edit the view"
            return False
        preview.columns, preview.rows = list(event.columns), list(event.rows)
        if event.kind == "cell":
            preview.cells[event.index] = (event.guidance_scale, event.image_guidance_scale)
            if preview.first_cell_s is None:
                preview.first_cell_s = time.monotonic() - preview.started
            return False
        preview.grid, preview.cell_width, preview.cell_height = pixels, event.cell_width, event.cell_height
        return True
