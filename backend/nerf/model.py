"""nerfacto with Instruct-NeRF2NeRF's losses: L1 + LPIPS on square ray patches, plus nerfacto's regularisers.

LPIPS needs torchvision's pretrained AlexNet. nerfacto itself builds torchmetrics' LPIPS *metric* at construction
(only used for evaluation images); the in2n loss re-uses that metric's network, so AlexNet is loaded once. When the job
runs without LPIPS (``--no-lpips`` / ``in2n-tiny``) the metric is replaced by :class:`LpipsDisabled`, which raises
if anything ever calls it, so that a job without the weights neither needs them nor silently fakes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.model_components.losses import DepthLossType, L1Loss, MSELoss, depth_loss
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from torch import Tensor, nn


class LpipsWeightsMissing(RuntimeError):
    """torchvision's AlexNet weights (LPIPS backbone) are not on disk and could not be downloaded."""


def alexnet_weights_path() -> Path:
    """Where torchvision keeps the AlexNet weights LPIPS needs (``$TORCH_HOME/hub/checkpoints/...``)."""
    from torchvision.models import AlexNet_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name


def ensure_lpips_weights() -> Path:
    """Make sure the LPIPS backbone weights are available, downloading them the normal way if needed.

    Raises :class:`LpipsWeightsMissing` with instructions when they are absent and cannot be fetched (offline).
    """
    path = alexnet_weights_path()
    if path.is_file():
        return path
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    try:
        torch.hub.load_state_dict_from_url(url, progress=False, map_location="cpu")
    except Exception as error:  # URLError, HTTPError, socket errors, SSL errors: all mean "could not download"
        raise LpipsWeightsMissing(
            f"LPIPS needs torchvision's pretrained AlexNet weights, which are not at {path} and could not be "
            f"downloaded ({type(error).__name__}: {error}). Either run once with internet access (they are fetched "
            f"automatically), or download {url} to {path} (TORCH_HOME moves that folder), or turn the LPIPS loss off "
            f"(--no-lpips, or memory mode in2n-tiny)."
        ) from error
    return path


class LpipsDisabled(nn.Module):
    """Stands in for nerfacto's LPIPS metric in jobs without LPIPS; fails loudly if used."""

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        raise RuntimeError("LPIPS is disabled for this job (use_lpips=False); its backbone weights were not loaded")


@contextlib.contextmanager
def _nerfacto_without_lpips_metric() -> Iterator[None]:
    """While active, nerfacto's ``populate_modules`` builds :class:`LpipsDisabled` instead of torchmetrics' LPIPS
    (nerfacto imports the class from ``torchmetrics.image.lpip`` inside ``populate_modules``)."""
    import torchmetrics.image.lpip as lpip_module

    original = lpip_module.LearnedPerceptualImagePatchSimilarity
    lpip_module.LearnedPerceptualImagePatchSimilarity = lambda *args, **kwargs: LpipsDisabled()  # type: ignore
    try:
        yield
    finally:
        lpip_module.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]


@dataclass
class In2nNerfactoModelConfig(NerfactoModelConfig):
    """nerfacto plus in2n's losses."""

    _target: type = field(default_factory=lambda: In2nNerfactoModel)
    use_lpips: bool = True
    """Add LPIPS between rendered and dataset patches."""
    use_l1: bool = True
    """L1 instead of nerfacto's MSE photometric loss."""
    patch_size: int = 32
    """Side of the ray patches the datamanager samples (must match it)."""
    lpips_loss_mult: float = 1.0
    """Weight of the LPIPS loss."""
    depth_loss_mult: float = 0.0
    """Weight of depth-nerfacto's DS-NeRF depth loss on batches with depth images (0: off)."""
    depth_sigma: float = 0.01
    """Variance of the DS-NeRF loss's window around the depth (nerfstudio divides by ``2 * sigma``), NeRF units."""
    depth_sigma_start: float = 0.0
    """The window's variance at step 0, narrowed geometrically to ``depth_sigma`` by ``depth_sigma_decay_steps``
    (0: ``depth_sigma`` throughout)."""
    depth_sigma_decay_steps: int = 0
    """Steps over which the window narrows."""


class In2nNerfactoModel(NerfactoModel):
    """nerfacto trained with in2n's L1 + patch LPIPS losses."""

    config: In2nNerfactoModelConfig

    def populate_modules(self) -> None:
        if self.config.use_lpips:
            super().populate_modules()
        else:
            with _nerfacto_without_lpips_metric():
                super().populate_modules()
        self.rgb_loss = L1Loss() if self.config.use_l1 else MSELoss()  # type: ignore[assignment]  # same interface
        self.depth_sigma_now = self.depth_sigma_at(0)

    def depth_sigma_at(self, step: int) -> float:
        """The depth window's variance at ``step``: a wide window first gives samples far from the surface a
        gradient towards it (a narrow one alone has none there), the narrow one then pins the surface."""
        start, end, steps = self.config.depth_sigma_start, self.config.depth_sigma, self.config.depth_sigma_decay_steps
        if start <= 0 or steps <= 0 or step >= steps:
            return end
        return start * (end / start) ** (step / steps)

    def get_training_callbacks(self, training_callback_attributes: Any) -> list[TrainingCallback]:
        def narrow(step: int) -> None:
            self.depth_sigma_now = self.depth_sigma_at(step)

        return [*super().get_training_callbacks(training_callback_attributes),
                TrainingCallback(where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], update_every_num_iters=1,
                                 func=narrow)]

    def get_outputs(self, ray_bundle: RayBundle | Cameras) -> dict[str, Any]:
        outputs = super().get_outputs(ray_bundle)  # type: ignore[arg-type]  # nerfacto takes ray bundles only
        if isinstance(ray_bundle, RayBundle) and ray_bundle.metadata and "directions_norm" in ray_bundle.metadata:
            # z-depth images -> distances along the rays
            outputs["directions_norm"] = ray_bundle.metadata["directions_norm"]
        return outputs

    def depth_loss(self, outputs: dict[str, Any], depth: Tensor) -> Tensor:
        """depth-nerfacto's DS-NeRF loss (nerfstudio's ``depth_loss``) against z-depth images, averaged over the
        proposal levels as it does; pixels without depth (0) do not count."""
        sigma = torch.tensor([self.depth_sigma_now], device=self.device)
        total = torch.zeros((), device=self.device)
        for weights, samples in zip(outputs["weights_list"], outputs["ray_samples_list"]):
            total = total + depth_loss(weights=weights, ray_samples=samples, termination_depth=depth,
                                       predicted_depth=outputs["expected_depth"], sigma=sigma,
                                       directions_norm=outputs["directions_norm"], is_euclidean=False,
                                       depth_loss_type=DepthLossType.DS_NERF)
        return total / len(outputs["weights_list"])

    def lpips_loss(self, predicted: Tensor, target: Tensor) -> Tensor:
        """LPIPS between ``N*P*P 3`` ray colours taken as ``N`` patches of ``P x P`` (the datamanager's order)."""
        size = self.config.patch_size

        def to_patches(rgb: Tensor) -> Tensor:
            return rgb.reshape(-1, size, size, 3).permute(0, 3, 1, 2).clamp(0, 1)

        # The metric's network is a plain module (no metric state), so calling it every step accumulates nothing.
        network = self.lpips.net
        return network(to_patches(predicted), to_patches(target), normalize=True).mean()

    def get_loss_dict(self, outputs: dict[str, Any], batch: dict[str, Any], metrics_dict: Any = None
                      ) -> dict[str, Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)  # rgb (L1 via self.rgb_loss) + regularisers
        if self.config.use_lpips:
            # the same pair nerfacto's L1 compares: with background_color "random" (or RGBA images) the render and
            # the target are both composited over that step's background, so the two losses agree on what to match
            predicted, target = self.renderer_rgb.blend_background_for_loss_computation(
                pred_image=outputs["rgb"], pred_accumulation=outputs["accumulation"],
                gt_image=batch["image"].to(self.device))
            loss_dict["lpips_loss"] = self.config.lpips_loss_mult * self.lpips_loss(predicted, target[..., :3])
        if self.training and self.config.depth_loss_mult > 0 and "depth_image" in batch:
            loss_dict["depth_loss"] = self.config.depth_loss_mult * self.depth_loss(
                outputs, batch["depth_image"].to(self.device))
        return loss_dict

    def update_to_step(self, step: int) -> None:
        """What training would have set by ``step``. nerfacto anneals its proposal weights in a training callback
        only, so a model loaded from a checkpoint rendered with the untrained value (1.0) until it trained again:
        a reloaded snapshot of a short run rendered differently from the NeRF it saved."""
        super().update_to_step(step)
        self.depth_sigma_now = self.depth_sigma_at(step)
        for callback in NerfactoModel.get_training_callbacks(self, None):  # type: ignore[arg-type]  # unused
            if TrainingCallbackLocation.BEFORE_TRAIN_ITERATION in callback.where_to_run:
                callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)

    def frozen_state_prefixes(self) -> tuple[str, ...]:
        """State-dict keys not worth checkpointing: the pretrained, frozen LPIPS network."""
        return ("lpips.",)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.frozen_state_prefixes())}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a checkpoint written by :meth:`trainable_state_dict`; every trainable tensor must be present."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(self.frozen_state_prefixes())]
        unexpected = [k for k in unexpected if not k.startswith(self.frozen_state_prefixes())]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
