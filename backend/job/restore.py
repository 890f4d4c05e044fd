"""Where a job's NeRF and training images come from when it (re)starts: its newest checkpoint and edited images
(resume), or the trained NeRF it starts from (``config.start``: a checkpoint or an earlier job's snapshot), whose
renders of every view may become the first training images and the editor's condition (a chained edit)."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend import atomic
from backend.config import EditJobConfig
from backend.job.jobdir import JobDir, JobDirError, JobState
from backend.nerf.trainer import NerfTrainer
from backend.pixels import to_uint8


def read_float_rgb(path: Path) -> torch.Tensor:
    """``H W 3`` float image in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)


class JobRestore:
    """Restores ``trainer``'s NeRF and its datamanager's images for one job run."""

    def __init__(self, jobs: JobDir, config: EditJobConfig, trainer: NerfTrainer, image_names: list[str],
                 state: JobState, log: Callable[[str], None]) -> None:
        self.jobs, self.config, self.trainer, self.image_names, self.state, self.log = (
            jobs, config, trainer, image_names, state, log)

    def restore(self) -> None:
        """Resume from the newest checkpoint; or start from ``config.start.checkpoint``; or nothing (reconstruct)."""
        checkpoints = self.jobs.list_checkpoints()
        if checkpoints:
            self._load_newest_readable(checkpoints)
            self.apply_start_images()
            edit_start = self.state.edit_start_step
            if edit_start is not None and self.trainer.step < edit_start and not self.config.start.checkpoint:
                # the checkpoints from the edit start on were lost (damaged, deleted): the readable one is from the
                # reconstruction, which resumes; the edits on disk stay, the DU makes its views' edits again
                self.log(f"warning: the newest readable checkpoint (step {self.trainer.step}) is older than the edit "
                         f"start (step {edit_start}): reconstructing again from it; editing starts over")
                self.state.edit_start_step, self.state.edits_done = None, 0
                return
            restored = 0
            for view, name in enumerate(self.image_names):
                path = self.jobs.edited_path(name)
                if path.is_file():
                    self.trainer.datamanager.set_image(view, read_float_rgb(path))
                    restored += 1
            self.log(f"resumed at step {self.trainer.step} with {restored} edited images")
            return
        start = self.config.start
        if not start.checkpoint:
            return
        try:
            self.trainer.load_checkpoint(Path(start.checkpoint), weights_only=True)
        except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            # torch's own message advises weights_only=False, which would run a tampered file's code
            raise JobDirError(f"the NeRF this edit starts from ({Path(start.checkpoint).name}) is damaged or not a "
                              f"checkpoint ({type(exc).__name__}): start from another snapshot") from None
        self.state.edit_start_step = self.trainer.step  # the given NeRF *is* the reconstruction
        self.log(f"starting from {start.checkpoint} (step {self.trainer.step})")
        if "renders" in (start.dataset, start.condition):
            self._render_start_images()
            self.apply_start_images()

    def _render_start_images(self) -> None:
        """The starting NeRF's render of every training view, kept in ``start_images/`` (a resumed job needs them
        again: they are its condition or first training images)."""
        for view, name in enumerate(self.image_names):
            atomic.write_png(self.jobs.start_image_path(name), to_uint8(self.trainer.render_view(view)))
        self.log(f"rendered the starting NeRF's {len(self.image_names)} views ({self.config.start.dataset} as the "
                 f"training images, {self.config.start.condition} as the editor's condition)")

    def apply_start_images(self) -> None:
        start = self.config.start
        if not self.jobs.start_images.is_dir() or "renders" not in (start.dataset, start.condition):
            return
        datamanager = self.trainer.datamanager
        for view, name in enumerate(self.image_names):
            path = self.jobs.start_image_path(name)
            if not path.is_file():
                raise JobDirError(f"{path}: the job's starting render of view {name} is missing")
            image = read_float_rgb(path)
            if start.condition == "renders":
                datamanager.set_original(view, image)
            if start.dataset == "renders":
                datamanager.set_image(view, image)

    def _load_newest_readable(self, checkpoints: list[Path]) -> None:
        """Resume from the newest checkpoint that loads; a damaged newer one (a crash mid-write on a filesystem
        without atomic renames, a full disk) is reported and skipped, not fatal."""
        for path in reversed(checkpoints):
            try:
                self.trainer.load_checkpoint(path)
                return
            except Exception as error:
                self.log(f"warning: checkpoint {path} is unreadable ({type(error).__name__}: {str(error)[:200]}); "
                         "trying an older one")
        raise JobDirError(f"no readable checkpoint in {self.jobs.checkpoints} "
                          f"({', '.join(p.name for p in checkpoints)} are all damaged)")
