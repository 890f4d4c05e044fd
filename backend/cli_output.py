"""What the command line shows while a job runs: one progress bar per phase, the job's log file, version lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


class ProgressBar:
    """The one progress display (a tqdm bar per phase: step / total, losses and ETA) and the job's log file.

    Every log line goes to ``<output>/edit.log`` (once the job directory exists); the terminal shows lines down to
    ``level``: ``debug:`` lines (tracebacks of expected failures) only at debug, info lines and the bar from info."""

    def __init__(self, level: str, log_path: Path) -> None:
        self.level = level
        self.log_path = log_path
        self.bar: Any = None
        self.phase = ""
        self._unwritten: list[str] = []

    @property
    def shows_progress(self) -> bool:
        return self.level in ("debug", "info")

    def progress(self, progress: Any) -> None:
        if not self.shows_progress:
            return
        from tqdm import tqdm

        if self.bar is None or progress.phase != self.phase:
            self.close()
            self.phase = progress.phase
            unit = "ray" if progress.phase == "exporting" else "step"  # the export counts rays shot of its budget
            self.bar = tqdm(total=progress.phase_total, desc=progress.phase, unit=unit, unit_scale=unit == "ray",
                            file=sys.stderr, dynamic_ncols=True)
        self.bar.n = progress.phase_step
        if progress.phase == "exporting":
            shown = {"points": str(progress.points_found)}
        else:
            shown = {k: f"{v:.4f}" for k, v in progress.losses.items()
                     if k in ("loss", "rgb_loss", "lpips_loss", "psnr")}
            shown["edits"] = str(progress.edits_done)
        self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()

    def log(self, line: str) -> None:
        self.write_log(line)
        debug = line.startswith("debug:")
        warning = line.startswith("warning:") or line.startswith("Traceback")
        if (debug and self.level != "debug") or (not debug and not warning and not self.shows_progress):
            return
        from tqdm import tqdm

        tqdm.write(line.removeprefix("debug: ").rstrip(), file=sys.stderr)

    def write_log(self, line: str) -> None:
        self._unwritten.append(line.rstrip() + "\n")
        if self.log_path.parent.is_dir():
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.writelines(self._unwritten)
            self._unwritten.clear()

    def state(self, state: str, detail: str) -> None:
        if state in ("exporting", "done", "cancelled", "failed"):
            self.close()
        if state == "failed":  # said once, by the final message
            self.write_log(f"[failed] {detail}")
            return
        self.log(f"[{state}] {detail}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_libraries() -> None:
    """One progress display: diffusers' and transformers' own bars and chatter are off (ours shows the job)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging
    except ImportError:  # pragma: no cover - both are installed with the backend
        return
    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def version_line() -> str:
    """What a bug report needs: the program's, Python's and torch's versions."""
    import platform

    try:
        from importlib.metadata import version

        ours = version("in2n-blender")
    except Exception:
        ours = "0.1.0 (source checkout)"
    import torch

    return f"in2n-blender {ours}, Python {platform.python_version()}, torch {torch.__version__}"
