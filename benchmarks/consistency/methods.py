"""The three compared methods, all run through the product's engine (:class:`backend.engine.EditEngine`):

* ``no_edit``: reconstruct the original scene (the engine's reconstruction phase, no editing steps);
* ``iterative_du``: the engine's Iterative Dataset Update with the simulated editor, started from that reconstruction
  (as Instruct-NeRF2NeRF starts from the trained NeRF of the original scene);
* ``one_shot``: edit every training image once (simulated editor at a high noise level, from the original image) and
  reconstruct a fresh NeRF from the edited images.

Held-out cameras are rendered from each job's newest checkpoint with the engine's own pieces (pipeline builder,
trainer, dataparser transform, camera factory), the same path the engine uses for viewport previews.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.config import EditJobConfig
from backend.editing.simulated import SimulatedInstructEditor
from backend.engine import EditEngine
from backend.job.types import JobCallbacks, JobResult, Progress
from backend.pixels import to_uint8
from benchmarks.consistency.images import load_capture, write_rgb

Log = Callable[[str], None]


@dataclass
class MethodRun:
    """What one method's engine job did."""

    name: str
    job_dir: Path
    scene_dir: Path
    status: str
    train_seconds: float
    """Seconds of NeRF training (and, for Iterative DU, the edits in between), without the geometry export."""
    total_seconds: float
    """Seconds of the whole engine job, export included."""
    steps: int
    edits: int
    notes: list[str] = field(default_factory=list)


class _Timer:
    """Engine callbacks that time the phases and print throttled progress lines."""

    def __init__(self, name: str, log: Log, every_s: float = 5.0) -> None:
        self.name, self.log, self.every_s = name, log, every_s
        self.started = time.perf_counter()
        self.exporting_at: float | None = None
        self._last = 0.0

    def on_state(self, state: str, detail: str) -> None:
        if state == "exporting":
            self.exporting_at = time.perf_counter()
        self.log(f"[{self.name}] {state} {detail}")

    def on_progress(self, progress: Progress) -> None:
        now = time.perf_counter()
        final = progress.phase_step == progress.phase_total
        if final or now - self._last >= self.every_s:
            self._last = now
            psnr = progress.losses.get("psnr")
            self.log(f"[{self.name}] {progress.phase} {progress.phase_step}/{progress.phase_total} "
                     f"loss {progress.losses.get('loss', float('nan')):.4f}"
                     + (f" train-psnr {psnr:.2f}" if psnr is not None else "")
                     + f" edits {progress.edits_done} ({now - self.started:.1f}s)")

    def callbacks(self) -> JobCallbacks:
        return JobCallbacks(on_state=self.on_state, on_progress=self.on_progress,
                            on_log=lambda line: self.log(f"[{self.name}] {line.rstrip()}"))


def run_job(name: str, config: EditJobConfig, editor: SimulatedInstructEditor, scene_dir: Path, job_dir: Path,
            log: Log, start_checkpoint: Path | None = None) -> MethodRun:
    """One engine job from scratch (an old job directory is removed: the benchmark measures a full run)."""
    shutil.rmtree(job_dir, ignore_errors=True)
    timer = _Timer(name, log)
    if start_checkpoint is not None:
        config = dataclasses.replace(config, start=dataclasses.replace(config.start, checkpoint=str(start_checkpoint)))
    engine = EditEngine(config, editor, progress_interval_s=1.0)
    result: JobResult = engine.run(scene_dir, job_dir, timer.callbacks())
    finished = time.perf_counter()
    notes: list[str] = []
    if result.status != "done":
        raise RuntimeError(f"{name}: engine job {result.status}: {result.error_kind}: {result.error}")
    status = result.status
    train_end = timer.exporting_at or finished
    state = json.loads((job_dir / "state.json").read_text())
    return MethodRun(name, job_dir, scene_dir, status, train_end - timer.started, finished - timer.started,
                     int(state.get("step", 0)), int(state.get("edits_done", 0)), notes)


def write_one_shot_scene(editor: SimulatedInstructEditor, original_dir: Path, out_dir: Path, timestep: int,
                         seed: int) -> float:
    """The one-shot baseline's training set: every original image edited once, from itself, at ``timestep``.

    Returns the seconds the edits took. The cameras (``transforms.json``) are the original ones.
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    shutil.copy2(original_dir / "transforms.json", out_dir / "transforms.json")
    capture = load_capture(original_dir)
    started = time.perf_counter()
    for view, frame in enumerate(capture.frames):
        original = editor.originals[view : view + 1]
        edited = editor.edit(original, original, "", timestep=timestep,
                             generator=torch.Generator().manual_seed(seed * 1_000_003 + view))
        write_rgb(out_dir / frame.file_path, to_uint8(edited[0].permute(1, 2, 0)))
    return time.perf_counter() - started


@torch.no_grad()
def render_heldout(run: MethodRun, heldout_dir: Path, checkpoint: Path | None = None) -> list[np.ndarray]:
    """``H W 3`` float renders of the held-out cameras from ``run``'s newest checkpoint (or ``checkpoint``, e.g. one
    of its snapshots)."""
    from backend.editing.memory import resolve_device
    from backend.job.jobdir import JobDir
    from backend.nerf.frames import DataparserTransform, make_camera
    from backend.nerf.setup import build_pipeline
    from backend.nerf.trainer import NerfTrainer

    stored = EditJobConfig.from_dict(json.loads((run.job_dir / "config.json").read_text()))
    device = resolve_device(stored.device)
    pipeline, optimizers = build_pipeline(stored, run.job_dir / "input", device)  # what the job trained on
    trainer = NerfTrainer(pipeline, optimizers, mixed_precision=stored.nerf.mixed_precision)
    checkpoints = [checkpoint] if checkpoint is not None else JobDir(run.job_dir).list_checkpoints()
    if not checkpoints:
        raise RuntimeError(f"{run.name}: no checkpoint in {run.job_dir}")
    trainer.load_checkpoint(checkpoints[-1], weights_only=True)
    outputs = trainer.datamanager.train_dataparser_outputs
    transform = DataparserTransform(outputs.dataparser_transform.numpy(), float(outputs.dataparser_scale))
    renders = []
    for frame in load_capture(heldout_dir).frames:
        k = frame.intrinsics
        camera = make_camera(transform.c2w_to_nerfstudio(np.asarray(frame.transform_matrix)), k.fl_x, k.fl_y, k.cx,
                             k.cy, k.w, k.h, trainer.device)
        renders.append(trainer.render(camera).cpu().numpy())
    del trainer, pipeline
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return renders
