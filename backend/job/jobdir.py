"""Paths and small state files of a job directory (layout documented in :mod:`backend.engine`)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend import atomic

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{9})\.ckpt$")


class JobDirError(ValueError):
    """A file of the job directory is damaged (e.g. after a crash or a full disk); the message names it."""


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`JobDirError` naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise JobDirError(f"{path}: unreadable ({type(error).__name__}: {str(error)[:200]}); delete it (or the job "
                          "directory) to start over") from None
    if not isinstance(data, dict):
        raise JobDirError(f"{path}: must hold a JSON object")
    return data

@dataclass
class JobState:
    """``state.json``: where the job is. Rewritten (atomically) after every edit and checkpoint."""

    status: str = "new"
    """new | running | cancelled | failed | done"""
    phase: str = "preparing"
    """The protocol's job state the job was last in: preparing | reconstructing | editing | exporting | done"""
    step: int = 0
    """NeRF steps of the newest checkpoint."""
    edit_start_step: int | None = None
    """Global NeRF step at which editing began (None until then)."""
    edits_done: int = 0
    """Edits made so far (their images are in edited/)."""
    checkpoint: str | None = None
    """File name (in checkpoints/) of the newest checkpoint."""
    edited_views: dict[str, int] = field(default_factory=dict)
    """edited/ file -> edit index that wrote it."""
    error: str | None = None
    updated: float = 0.0


class JobDir:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    config = property(lambda self: self.root / "config.json")
    state_file = property(lambda self: self.root / "state.json")
    manifest = property(lambda self: self.root / "manifest.json")
    transforms = property(lambda self: self.root / "dataparser_transforms.json")
    edited = property(lambda self: self.root / "edited")
    checkpoints = property(lambda self: self.root / "checkpoints")
    snapshots = property(lambda self: self.root / "snapshots")
    start_images = property(lambda self: self.root / "start_images")
    """A chained edit's first training images: its starting snapshot's renders of every view."""

    def create(self) -> None:
        for folder in (self.root, self.edited, self.checkpoints, self.snapshots):
            folder.mkdir(parents=True, exist_ok=True)

    def read_state(self) -> JobState | None:
        if not self.state_file.is_file():
            return None
        data = read_json_object(self.state_file)
        known = set(JobState.__dataclass_fields__)
        try:
            return JobState(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:
            raise JobDirError(f"{self.state_file}: not a job state ({error})") from None

    def write_state(self, state: JobState) -> None:
        state.updated = time.time()
        atomic.write_json(self.state_file, asdict(state))

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:09d}.ckpt"

    def list_checkpoints(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if CHECKPOINT_PATTERN.match(p.name))

    def prune_checkpoints(self, keep: int) -> None:
        for old in self.list_checkpoints()[: -max(keep, 1)]:
            old.unlink(missing_ok=True)

    def edited_path(self, relative_image: str) -> Path:
        """Edited image for an input image (same relative path, PNG)."""
        return (self.edited / relative_image).with_suffix(".png")

    def start_image_path(self, relative_image: str) -> Path:
        return (self.start_images / relative_image).with_suffix(".png")

    def extend(self, extra_steps: int) -> int:
        """Let a stopped or finished job run ``extra_steps`` more editing steps: its stored config asks for them and
        its state is runnable again (it resumes from its newest checkpoint). Returns the new editing total."""
        config = read_json_object(self.config)
        update = config.get("update")
        if not isinstance(update, dict) or not isinstance(update.get("total_steps"), int):
            raise JobDirError(f"{self.config}: no update.total_steps to extend")
        update["total_steps"] += extra_steps
        atomic.write_json(self.config, config)
        state = self.read_state() or JobState()
        state.status, state.error = "new", None
        self.write_state(state)
        # the manifest stays: its results stay listed until the continued run replaces them (or if it fails)
        return int(update["total_steps"])
