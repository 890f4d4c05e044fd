"""One run of an edit job (used by :class:`backend.engine.EditEngine`; see its docstring for the job directory)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend import atomic
from backend.config import EditJobConfig, validate_config
from backend.editing.memory import resolve_device
from backend.export import ExportCancelled, ExportError, ExportProgress
from backend.job.between_steps import BetweenSteps
from backend.job.jobdir import JobDir, JobDirError, JobState, read_json_object
from backend.job.restore import JobRestore
from backend.job.snapshot_export import export_into
from backend.job.snapshots import SnapshotExport, SnapshotRecord, SnapshotStore
from backend.job.types import EngineSettings, JobCallbacks, JobResult, Progress
from backend.nerf.dataset_update import DatasetUpdater, EditRecord, EditSchedule
from backend.nerf.frames import DataparserTransform
from backend.nerf.local_edit import soft_mask
from backend.nerf.nerfstudio_config import write_nerfstudio_config
from backend.nerf.setup import build_pipeline
from backend.nerf.trainer import NerfTrainer
from backend.pixels import to_uint8
from backend.scene import Scene, SceneError, export_in_layout, write_dataparser_input


class JobRun:
    def __init__(self, engine: EngineSettings, scene: Scene, job_dir: Path, callbacks: JobCallbacks,
                 stop: threading.Event) -> None:
        self.engine = engine
        self.scene = scene
        self.jobs = JobDir(job_dir)
        self.snapshots = SnapshotStore(self.jobs.snapshots)
        for folder in self.snapshots.remove_incomplete():  # interrupted writes: no listing shows them
            callbacks.on_log(f"removed {folder.name}: a snapshot whose writing was interrupted")
        self.callbacks = callbacks
        self.stop = stop
        self.config = self._job_config()
        self.state = self.jobs.read_state() or JobState()
        self._last_progress = 0.0
        self._last_preview = 0.0
        self._step_times: list[float] = []
        self._export_started: float | None = None
        """When the export began (its ETA comes from the rate since then)."""
        self._last_losses: dict[str, float] = {}
        """The newest training losses (still shown while exporting)."""
        self.geometry_error: str | None = None
        """Why no mesh / point cloud was exported (e.g. a NeRF still transparent after too few steps)."""

    def _job_config(self) -> EditJobConfig:
        """A resumed job keeps the config it started with (its checkpoints and edits were made with it)."""
        if self.jobs.config.is_file():
            try:
                stored = EditJobConfig.from_dict(read_json_object(self.jobs.config))
                validate_config(stored, str(self.jobs.config))
            except (ValueError, TypeError) as error:  # JobDirError, unknown keys, out-of-range values
                raise JobDirError(f"{self.jobs.config}: {error}") from None
            if stored != self.engine.config:
                self.callbacks.on_log(f"resuming {self.jobs.root} with its stored config.json")
            return stored
        return self.engine.config

    # -- the job -------------------------------------------------------------------------------------------------

    def run(self):
        config = self.config
        if self.state.status == "done" and self.jobs.manifest.is_file():  # a Continue sets the status to "new"
            self.callbacks.on_log("job already finished; nothing to do")
            self.callbacks.on_state("done", str(self.jobs.manifest))
            return self._result("done")
        self._check_patch_fits(config)  # a bad scene for this config leaves no job directory behind
        self.jobs.create()
        atomic.write_json(self.jobs.config, config.to_dict())
        self.state.status, self.state.error = "running", None
        self.jobs.write_state(self.state)

        device = resolve_device(config.device)
        self.callbacks.on_log(f"building nerfacto on {device} for {self.scene.num_views} views")
        # nerfstudio reads one transforms.json of the training views, whatever layout the user brought
        input_dir = write_dataparser_input(self.scene, self.jobs.root / "input", use_depth=config.nerf.use_depth)
        pipeline, optimizers = build_pipeline(config, input_dir, device)
        if config.nerf.use_depth and self.scene.has_depth:
            covered = self.scene.depth_coverage()
            self.callbacks.on_log(f"depth supervision: every view has a depth image, {covered:.1%} of their pixels "
                                  f"with depth (weight {config.nerf.depth_loss_mult})")
            if covered == 0:
                self.callbacks.on_log("warning: the depth images hold no depth at all (every pixel 0): depth "
                                      "supervision does nothing; check how the depth was written")
        self.trainer = NerfTrainer(pipeline, optimizers, mixed_precision=config.nerf.mixed_precision)
        write_nerfstudio_config(pipeline.config, self.jobs.root)  # ns-viewer / ns-export open the job
        self.transform = DataparserTransform.of_pipeline(pipeline)
        atomic.write_json(self.jobs.transforms, self.transform.to_json())
        outputs = self.trainer.datamanager.train_dataparser_outputs
        names = {frame.image_path: frame.name for frame in self.scene.frames}
        self.image_names = [names[Path(p).resolve()] for p in outputs.image_filenames]
        self.between_steps = BetweenSteps(self.engine, self.trainer, self.transform, self.snapshots, config,
                                          self.callbacks)
        JobRestore(self.jobs, config, self.trainer, self.image_names, self.state, self.callbacks.on_log).restore()

        editor = self._editor(device)
        instruction = editor.encode_instruction(config.prompt)
        schedule = EditSchedule(config.update, len(self.image_names), editor.num_train_timesteps,
                                edits_done=self.state.edits_done)
        masks = self._edit_masks()
        self.updater = DatasetUpdater(schedule, editor, instruction, masks)
        self._focus_rays(masks)

        if self.state.edit_start_step is None:
            self.callbacks.on_state("reconstructing", f"{config.nerf.reconstruction_steps} steps")
            if not self._train("reconstructing", config.nerf.reconstruction_steps, start=0, editing=False):
                return self._stopped()
            self.state.edit_start_step = self.trainer.step
            self._checkpoint()
        if not self.snapshots.steps():  # the original scene's NeRF (or the one the job starts from)
            self._snapshot("reconstruction")
        self.callbacks.on_state("editing", config.prompt)
        if not self._train("editing", config.update.total_steps, start=self.state.edit_start_step, editing=True):
            return self._stopped()
        self._checkpoint()
        final = self._snapshot("final")  # the end of the job is always one of the iterations the user can pick

        exported = None
        if config.output.export_geometry or self.scene.surfaces:
            self.callbacks.on_state("exporting", str(self.snapshots.export_dir(final.step)))
            self.state.phase = "exporting"
            self.jobs.write_state(self.state)
            self._export_started = time.monotonic()
            try:
                exported = export_into(self.trainer, self.transform, self.snapshots, final.step, config, self.stop,
                                       self._export_progress, geometry=config.output.export_geometry)
            except ExportCancelled:
                return self._stopped()
            except ExportError as error:
                # The edits are the expensive part: the job keeps them (and says why there is no geometry).
                self.geometry_error = f"no geometry exported: {error}"
            else:
                self.geometry_error = exported.geometry_error
            if self.stop.is_set():
                return self._stopped()
            if self.geometry_error:
                self.callbacks.on_log(f"warning: {self.geometry_error}")
        self._write_manifest(final.step, exported, self._export_capture())
        self.state.status, self.state.phase = "done", "done"
        self.jobs.write_state(self.state)
        self.callbacks.on_state("done", str(self.jobs.manifest))
        result: JobResult = self._result("done")
        return result

    def _edit_masks(self) -> dict[int, torch.Tensor]:
        """View (dataparser index) -> soft edit mask, for the views whose frame names one (``edit_mask_path``)."""
        by_name = {frame.name: frame for frame in self.scene.frames}
        update, masks = self.config.update, {}
        for view, name in enumerate(self.image_names):
            frame = by_name.get(name)
            if frame is not None and frame.edit_mask_path is not None:
                pixels = np.asarray(Image.open(frame.edit_mask_path).convert("L"), dtype=np.float32) / 255.0
                masks[view] = soft_mask(torch.from_numpy(pixels), update.mask_dilation_px, update.mask_feather_px)
        if masks:
            covered = np.mean([float((mask > 0).float().mean()) for mask in masks.values()])
            self.callbacks.on_log(f"local edits: {len(masks)} of {len(self.image_names)} views have an edit mask "
                                  f"({covered:.0%} of their pixels on average); outside it the original stays")
        return masks

    def _focus_rays(self, masks: dict[int, torch.Tensor]) -> None:
        """Aim a share of every batch at the selected objects (``nerf.focus_fraction``), however little of the
        views they cover; LPIPS patches keep uniform sampling."""
        fraction = self.config.nerf.focus_fraction
        if not masks or fraction <= 0 or self.config.effective_patch_size() != 1:
            return
        pixels = self.trainer.datamanager.focus(masks, fraction)
        total = self.trainer.datamanager.image_batch["image"].shape[:3].numel()
        self.callbacks.on_log(f"{fraction:.0%} of each batch's rays fall inside the edit masks "
                              f"({pixels / total:.1%} of the pixels; the rest are drawn from every pixel)")

    def _check_patch_fits(self, config: EditJobConfig) -> None:
        """LPIPS compares square patches of ``patch_size`` pixels (AlexNet needs 32): smaller images are a bad scene
        for that configuration, said before anything is built rather than an IndexError at the first step."""
        patch = config.effective_patch_size()
        frame = self.scene.frames[0]
        if patch > min(frame.width, frame.height):
            raise SceneError("w/h", f"images of {frame.width} x {frame.height} px are smaller than the {patch} px "
                                    "patches the LPIPS loss compares: use images of at least "
                                    f"{patch} px on each side, or train without LPIPS (--no-lpips, "
                                    "memory mode in2n-tiny)")

    def _editor(self, device: str):
        if self.engine.editor is not None:
            return self.engine.editor
        from backend.editing.loaders import load_editor

        editor_config = self.config.editor
        self.callbacks.on_log(f"loading editor {editor_config.source!r}")
        self.engine.editor = load_editor(editor_config.source, device=editor_config.device or device,
                                         memory_mode=self.config.memory_mode,
                                         max_side=editor_config.max_side, scene=self.scene)
        return self.engine.editor

    # -- training ------------------------------------------------------------------------------------------------

    def _train(self, phase: str, steps: int, *, start: int, editing: bool) -> bool:
        """NeRF steps ``start + (trainer.step - start) .. start + steps``; False if stopped (after checkpointing)."""
        self.state.phase = phase
        self.jobs.write_state(self.state)
        output = self.config.output
        if editing and not self.config.nerf.depth_while_editing:  # set again on a resume: the model is rebuilt
            self.trainer.pipeline.model.config.depth_loss_mult = 0.0
        while self.trainer.step < start + steps:
            if self.stop.is_set():
                self._checkpoint()
                return False
            self.between_steps.serve()
            phase_step = self.trainer.step - start
            if editing and output.snapshot_every > 0 and phase_step > 0 and phase_step % output.snapshot_every == 0:
                self._scheduled_snapshot()
            step_started = time.perf_counter()
            if editing and self.updater.schedule.is_edit_step(phase_step):
                for record in self.updater.edit_next(self.trainer):
                    self._save_edit(record)
            losses = self.trainer.train_step()
            self._step_times = (self._step_times + [time.perf_counter() - step_started])[-50:]
            if self.trainer.step % output.checkpoint_every == 0:
                self._checkpoint()
            self._progress(phase, start, steps, losses, final=self.trainer.step == start + steps)
        return True

    def _save_edit(self, record: EditRecord) -> None:
        name = self.image_names[record.view]
        atomic.write_png(self.jobs.edited_path(name), to_uint8(record.image))
        self.state.edits_done = record.edit_index + 1
        self.state.edited_views[str(self.jobs.edited_path(name).relative_to(self.jobs.root))] = record.edit_index
        self.jobs.write_state(self.state)
        self.callbacks.on_log(f"edit {record.edit_index}: view {name} at t={record.timestep} "
                              f"(render {record.render_seconds:.2f}s, edit {record.edit_seconds:.2f}s)")
        now = time.monotonic()
        if now - self._last_preview >= self.engine.preview_interval_s:
            self._last_preview = now
            self.callbacks.on_preview(f"edit/{name}", to_uint8(record.image))

    def _checkpoint(self) -> None:
        path = self.jobs.checkpoint_path(self.trainer.step)
        self.trainer.save_checkpoint(path)
        self.state.step, self.state.checkpoint = self.trainer.step, path.name
        self.jobs.write_state(self.state)
        self.jobs.prune_checkpoints(self.config.output.keep_checkpoints)

    def _snapshot(self, reason: str) -> SnapshotRecord:
        """Keep the NeRF as it is now: weights, renders of the snapshot views, the losses (once per step)."""
        existing = self.snapshots.read(self.trainer.step)
        if existing is not None:
            return existing
        step = self.trainer.step
        count = min(self.config.output.snapshot_views, len(self.image_names))
        views = {}
        self.trainer.save_checkpoint(self.snapshots.model(step), weights_only=True)
        for view in sorted({int(v) for v in np.linspace(0, len(self.image_names) - 1, count).round()}):
            image = to_uint8(self.trainer.render_view(view))
            name = self.image_names[view]
            path = self.snapshots.view_path(step, name)
            atomic.write_png(path, image)
            views[name] = path.relative_to(self.snapshots.folder(step)).as_posix()
            self.callbacks.on_preview(f"snapshot/{name}", image)
        edit_start = self.state.edit_start_step if self.state.edit_start_step is not None else step
        record = SnapshotRecord(step=step, editing_step=max(0, step - edit_start), reason=reason,
                                images_edited=self.state.edits_done, losses=dict(self._last_losses), views=views)
        self.snapshots.write_record(record)
        self.callbacks.on_snapshot(record)
        output = self.config.output
        with self.engine.snapshot_lock:  # a pin request waits: it never pins a snapshot being rotated away
            rotated_away = self.snapshots.rotate(
                output.max_snapshots, output.max_snapshot_bytes,
                lambda kept: self.engine.keeps_snapshot(self.snapshots.model(kept.step)))
        for rotated in rotated_away:
            self.callbacks.on_log(f"snapshot {rotated.step} rotated away: a job keeps {output.max_snapshots} "
                                  f"snapshots within {output.max_snapshot_bytes / 2**30:.1f} GiB")
            self.callbacks.on_snapshot_rotated(rotated)
        return record

    def _scheduled_snapshot(self) -> None:
        refusal = self.engine.refuses_snapshot()  # the server's snapshots fill its space: another job's stay
        if refusal is None:
            self._snapshot("scheduled")
        else:
            self.callbacks.on_log(f"warning: snapshot at step {self.trainer.step} not kept: {refusal}")

    def _progress(self, phase: str, start: int, steps: int, losses: dict[str, float], final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._last_progress < self.engine.progress_interval_s:
            return
        self._last_progress = now
        self._last_losses = losses
        edit_start = self.state.edit_start_step
        total = (edit_start if edit_start is not None else self.config.nerf.reconstruction_steps)
        total += self.config.update.total_steps
        remaining = total - self.trainer.step
        eta = remaining * float(np.mean(self._step_times)) if self._step_times else None
        self.callbacks.on_progress(Progress(phase, self.trainer.step, total, self.trainer.step - start, steps,
                                            losses, eta, self.state.edits_done))

    def _export_progress(self, export: ExportProgress) -> None:
        """Export progress as the job's progress (phase ``exporting``, rays shot of the budget, ETA from the rate)."""
        now = time.monotonic()
        if not export.finished and now - self._last_progress < self.engine.progress_interval_s:
            return
        self._last_progress = now
        eta = export.eta_s(now - (self._export_started or now))
        step = self.trainer.step
        self.callbacks.on_progress(Progress("exporting", step, step, export.rays_done, export.rays_total,
                                            self._last_losses, eta, self.state.edits_done, export.points_found))

    # -- endings -------------------------------------------------------------------------------------------------

    def _stopped(self):
        """Cancelled (or the server is shutting down): checkpointed to resume, and a snapshot to import now."""
        snapshot = self._snapshot("stopped")
        self.state.status = "cancelled"
        self.jobs.write_state(self.state)
        self.callbacks.on_state("cancelled", f"checkpoint {self.state.checkpoint}; snapshot at step {snapshot.step}")
        return self._result("cancelled")

    def _edited_files(self) -> dict[str, Path]:
        """Image path relative to the scene -> its newest edited image, for the views edited so far."""
        return {name: self.jobs.edited_path(name) for name in self.image_names if self.jobs.edited_path(name).is_file()}

    def _export_capture(self) -> Path:
        """The user's capture in its own layout, with the edited images in place (``edited_capture/``)."""
        return export_in_layout(self.scene, self._edited_files(), self.jobs.root / "edited_capture")

    def _write_manifest(self, final_step: int, exported: SnapshotExport | None, edited_capture: Path) -> None:
        relative = lambda path: str(Path(path).relative_to(self.jobs.root))  # noqa: E731
        folder = self.snapshots.folder(final_step)
        in_snapshot = lambda name: relative(folder / name) if name else None  # noqa: E731
        manifest = {
            "prompt": self.config.prompt,
            "scene": str(self.scene.root),
            "steps": self.trainer.step,
            "edit_start_step": self.state.edit_start_step,
            "edits_done": self.state.edits_done,
            "point_cloud": in_snapshot(exported.point_cloud) if exported else None,
            "mesh": in_snapshot(exported.mesh) if exported else None,
            "textured_mesh": in_snapshot(exported.textured_mesh) if exported else None,
            "textured_mesh_files": [in_snapshot(name) for name in exported.extra_files] if exported else [],
            "baked": [{**record, "texture": in_snapshot(record["texture"])} for record in exported.baked]
            if exported else [],
            "num_points": exported.num_points if exported else 0,
            "num_mesh_vertices": exported.num_vertices if exported else 0,
            "num_mesh_faces": exported.num_faces if exported else 0,
            "bounds_min": exported.bounds_min if exported else None,
            "bounds_max": exported.bounds_max if exported else None,
            "geometry_error": self.geometry_error,
            "frame": "input (transforms.json); dataparser_transforms.json maps it to the NeRF frame",
            "edited_images": {name: relative(path) for name, path in self._edited_files().items()},
            "snapshots": [relative(self.snapshots.folder(step)) for step in self.snapshots.steps()],
            "final_snapshot": relative(folder),
            "edited_capture": {"layout": self.scene.layout, "folder": relative(edited_capture)},
            "checkpoint": f"checkpoints/{self.state.checkpoint}",
            "config": dataclasses.asdict(self.config),
        }
        atomic.write_json(self.jobs.manifest, manifest)

    def _result(self, status: str):
        manifest = json.loads(self.jobs.manifest.read_text()) if status == "done" else {}
        return JobResult(
            status, self.jobs.root, steps=self.state.step, edits_done=self.state.edits_done,
            manifest=self.jobs.manifest if status == "done" else None,
            point_cloud=self.jobs.root / manifest["point_cloud"] if manifest.get("point_cloud") else None,
            mesh=self.jobs.root / manifest["mesh"] if manifest.get("mesh") else None,
            geometry_error=manifest.get("geometry_error"),
        )
