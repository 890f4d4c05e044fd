"""Settings of the job service."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JobServiceConfig:
    """Where jobs live and how they run."""

    jobs_dir: Path
    """Uploaded scenes, job records, the engine's job directories and the server log."""
    default_editor: str = "timbrooks/instruct-pix2pix"
    """Editor of jobs that do not choose one in ``engine_overrides.editor.source``: a Hugging Face id, a local
    diffusers folder, ``tiny`` or ``full-random``."""
    model_dirs: list[Path] = field(default_factory=list)
    """Folders whose diffusers models clients may name as ``editor.source`` (besides model ids, ``tiny`` and
    ``full-random``); nothing else on the server's disk can be named by a client."""
    device: str = "auto"
    """Device of jobs that do not choose one in ``engine_overrides.device``."""
    max_scene_bytes: int = 8 * 1024**3
    """Largest accepted scene upload (sum of all image bytes); bigger ones are refused at ``scene_begin``."""
    max_pending_upload_bytes: int = 8 * 1024**3
    """Cap on the declared bytes of all uploads in progress together; a ``scene_begin`` beyond it is refused until
    others finish or go idle. (Images are allocated as their bytes arrive, so memory follows what was sent.)"""
    upload_idle_s: float = 600.0
    """An upload with no chunk for this long is dropped (its client went away); its memory is freed."""
    max_snapshot_bytes: int = 100 * 1024**3
    """Disk space all jobs' NeRF snapshots may take together; beyond it, jobs keep no new scheduled snapshots (each
    refusal is a warning in the job's log) and no job's snapshot is deleted for another's. A job's own cap is
    ``engine_overrides.output.max_snapshot_bytes``."""
    preview_budget: float = 0.04
    """Previews may take at most this fraction of the training time (their rate is lowered when rendering is slow)."""
