"""A thin training loop over a nerfstudio pipeline: one step at a time, so the caller can interleave dataset edits,
previews and cancellation between steps.

It does what nerfstudio's ``Trainer.train_iteration`` does (training callbacks, autocast + grad scaler on CUDA,
optimiser and scheduler steps) without the viewer, writers and its own outer loop. Checkpoints use nerfstudio's
layout (``step``, ``pipeline``, ``optimizers``, ``schedulers``, ``scalers``) and are written atomically.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.pipelines.base_pipeline import VanillaPipeline
from torch import Tensor

from backend import atomic
from backend.nerf.datamanager import EditableDataManager
from backend.nerf.model import In2nNerfactoModel

#: The non-tensor types nerfstudio checkpoints contain (numpy scalars in optimiser / scheduler state).
CHECKPOINT_SAFE_GLOBALS = [np._core.multiarray.scalar, np.dtype,  # type: ignore[attr-defined]
                           *{type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")}]


def plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value.item() if isinstance(value, np.generic) else value


class NerfTrainer:
    """Owns the pipeline, its optimisers and the global step counter."""

    def __init__(self, pipeline: VanillaPipeline, optimizers: Optimizers, *, mixed_precision: bool = True) -> None:
        self.pipeline = pipeline
        self.optimizers = optimizers
        self.device = torch.device(pipeline.device)
        self.autocast = mixed_precision and self.device.type == "cuda"
        # nerfstudio annotates torch.cuda.amp.GradScaler, the deprecated alias of this class
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.autocast)
        attributes = TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=self.grad_scaler,  # type: ignore[arg-type]
                                                pipeline=pipeline, trainer=None)
        self.callbacks = pipeline.get_training_callbacks(attributes)
        self.step = 0
        """Number of NeRF steps taken so far (reconstruction and editing together)."""

    @property
    def model(self) -> In2nNerfactoModel:
        model = self.pipeline.model
        assert isinstance(model, In2nNerfactoModel)
        return model

    @property
    def datamanager(self) -> EditableDataManager:
        datamanager = self.pipeline.datamanager
        assert isinstance(datamanager, EditableDataManager)
        return datamanager

    def train_step(self) -> dict[str, float]:
        """One optimisation step on a batch of rays from the current dataset; returns the losses (and PSNR)."""
        step = self.step
        self.pipeline.train()
        for callback in self.callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        self.optimizers.zero_grad_all()
        with torch.autocast(device_type=self.device.type, enabled=self.autocast):
            _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
            loss = functools.reduce(torch.add, loss_dict.values())
        self.grad_scaler.scale(loss).backward()
        self.optimizers.optimizer_scaler_step_all(self.grad_scaler)  # type: ignore[arg-type]  # see __init__
        scale = self.grad_scaler.get_scale()
        self.grad_scaler.update()
        if scale <= self.grad_scaler.get_scale():  # a skipped (overflowing) step must not advance the schedule
            self.optimizers.scheduler_step_all(step)
        for callback in self.callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        self.step += 1
        losses = {name: float(value.detach()) for name, value in loss_dict.items()}
        losses["loss"] = float(loss.detach())
        if "psnr" in metrics_dict:
            losses["psnr"] = float(metrics_dict["psnr"].detach())
        return losses

    @torch.no_grad()
    def render(self, camera: Cameras) -> Tensor:
        """``H W 3`` render in [0, 1] of a single camera (evaluation mode: average appearance embedding)."""
        self.pipeline.eval()
        try:
            outputs = self.model.get_outputs_for_camera(camera.to(self.device))
        finally:
            self.pipeline.train()
        return outputs["rgb"].clamp(0, 1).float()

    def training_camera(self, view: int) -> Cameras:
        """Training view ``view`` (dataparser index) with the camera optimiser's pose correction applied."""
        cameras = self.datamanager.train_dataset.cameras
        camera = cameras[view : view + 1].to(self.device)
        camera.metadata = {"cam_idx": view}
        with torch.no_grad():
            corrected = self.model.camera_optimizer.apply_to_camera(camera)
        camera.camera_to_worlds = corrected.reshape(camera.camera_to_worlds.shape).to(camera.camera_to_worlds)
        camera.metadata = None
        return camera

    def render_view(self, view: int) -> Tensor:
        return self.render(self.training_camera(view))

    # -- checkpoints ---------------------------------------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        """nerfstudio's checkpoint layout, holding only tensors and plain Python values (the schedulers' numpy
        scalars become floats), so that ``torch.load``'s weights-only default reads it: nerfstudio's own tools load
        checkpoints that way under torch >= 2.6."""
        frozen = tuple("_model." + prefix for prefix in self.model.frozen_state_prefixes())
        return plain({
            "step": self.step,
            "pipeline": {k: v for k, v in self.pipeline.state_dict().items() if not k.startswith(frozen)},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        })

    def save_checkpoint(self, path: Path, *, weights_only: bool = False) -> None:
        """``weights_only``: the NeRF without optimiser state (a snapshot: a third of the size, and all that
        rendering, exporting or starting another edit from it needs)."""
        state = self.checkpoint_state()
        if weights_only:
            state = {"step": state["step"], "pipeline": state["pipeline"]}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic.write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path: Path, *, weights_only: bool = False) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (or by ``ns-train`` with a matching config).

        ``weights_only``: restore the NeRF but not the optimiser state (a checkpoint from another run).
        """
        # Weights-only unpickling (no arbitrary code from a tampered file): nerfstudio checkpoints hold tensors,
        # numbers, dicts and a few numpy scalars (optimiser / scheduler state), which are allowlisted here.
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            state = torch.load(path, map_location=self.device, weights_only=True)
        model_state = {}
        for key, value in state["pipeline"].items():
            if key.startswith("_model."):
                name = key[len("_model.") :]
                model_state[name[len("module.") :] if name.startswith("module.") else name] = value
        self.model.load_trainable_state_dict(model_state)
        # the model as it was when saved: after step - 1 trained (its schedules, e.g. the proposal annealing, were
        # set before that step); training goes on at ``step``, whose callbacks move them on. One step later, a
        # reloaded snapshot rendered up to 17 levels off the renders kept with it.
        self.model.update_to_step(max(0, int(state["step"]) - 1))
        self.step = int(state["step"])
        if weights_only:
            return
        for name, optimizer in self.optimizers.optimizers.items():
            if name in state.get("optimizers", {}):
                optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.optimizers.schedulers.items():
            if name in state.get("schedulers", {}):
                scheduler.load_state_dict(state["schedulers"][name])
        if "scalers" in state and self.grad_scaler.is_enabled():
            self.grad_scaler.load_state_dict(state["scalers"])
