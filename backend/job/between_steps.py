"""Work a running job does between two NeRF steps for other threads: renders of requested preview cameras, and
exports of its snapshots (its own pipeline with the snapshot's weights swapped in, then back)."""

from __future__ import annotations

from backend.config import EditJobConfig
from backend.job.snapshot_export import export_into
from backend.job.snapshots import SnapshotStore
from backend.job.types import EngineSettings, JobCallbacks, SnapshotExportTask
from backend.nerf.frames import DataparserTransform, make_camera
from backend.nerf.trainer import NerfTrainer
from backend.pixels import to_uint8


class BetweenSteps:
    def __init__(self, engine: EngineSettings, trainer: NerfTrainer, transform: DataparserTransform,
                 snapshots: SnapshotStore, config: EditJobConfig, callbacks: JobCallbacks) -> None:
        self.engine, self.trainer, self.transform = engine, trainer, transform
        self.snapshots, self.config, self.callbacks = snapshots, config, callbacks

    def serve(self) -> None:
        self.serve_previews()
        self.serve_exports()
        calls = self.engine.calls
        while not calls.empty():
            calls.get_nowait()(self.engine.editor)  # the work reports its own failures

    def serve_previews(self) -> None:
        requests = self.engine.preview_requests
        while not requests.empty():
            camera = requests.get_nowait()
            pose = self.transform.c2w_to_nerfstudio(camera.c2w)
            nerf_camera = make_camera(pose, camera.fl_x, camera.fl_y, camera.cx, camera.cy, camera.width,
                                      camera.height, self.trainer.device)
            self.callbacks.on_preview(camera.name, to_uint8(self.trainer.render(nerf_camera)))

    def serve_exports(self) -> None:
        requests = self.engine.export_requests
        while not requests.empty():
            task = requests.get_nowait()
            try:
                task.on_done(self.export(task), None)
            except Exception as error:  # reported to the requester; the job carries on training
                task.on_done(None, error)

    def export(self, task: SnapshotExportTask):  # -> SnapshotExport
        cached = self.snapshots.read_export(task.step)
        if cached is not None:
            return cached
        if self.snapshots.read(task.step) is None:
            raise FileNotFoundError(f"{self.snapshots.folder(task.step)}: no such snapshot")
        model, trainer = self.trainer.model, self.trainer
        current = {name: value.detach().clone() for name, value in model.trainable_state_dict().items()}
        current_step = trainer.step
        try:
            trainer.load_checkpoint(self.snapshots.model(task.step), weights_only=True)
            return export_into(trainer, self.transform, self.snapshots, task.step, self.config, task.stop,
                               task.on_progress)
        finally:  # the job's own NeRF, exactly as it was, whatever the export did
            model.load_trainable_state_dict(current)
            model.update_to_step(current_step)
            trainer.step = current_step

