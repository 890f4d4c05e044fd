"""Build the nerfstudio pipeline (dataparser, editable datamanager, in2n nerfacto) and its optimisers from a job config."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

from backend.config import EditJobConfig
from backend.nerf.datamanager import EditableDataManagerConfig
from backend.nerf.model import In2nNerfactoModelConfig, ensure_lpips_weights


def _implementation(config: EditJobConfig, device: str) -> str:
    if config.nerf.implementation != "auto":
        return config.nerf.implementation
    if not device.startswith("cuda"):
        return "torch"
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return "torch"
    return "tcnn"


def pipeline_config(config: EditJobConfig, scene_dir: Path, device: str, *, depth: bool = False) -> VanillaPipelineConfig:
    """nerfstudio's config objects for this job (the same objects ``ns-train`` would build). ``depth``: the scene's
    transforms.json names a depth image for every view, and the job supervises with them."""
    nerf = config.nerf
    patch_size = config.effective_patch_size()
    implementation = _implementation(config, device)
    dataparser = NerfstudioDataParserConfig(
        data=Path(scene_dir),
        eval_mode="all",  # every view is edited and trained on; there is no held-out split
        downscale_factor=1,  # use the images as given (the client chose the resolution)
    )
    datamanager = EditableDataManagerConfig(
        dataparser=dataparser,
        train_num_rays_per_batch=max(nerf.rays_per_batch, patch_size * patch_size),
        eval_num_rays_per_batch=nerf.rays_per_batch,
        patch_size=patch_size,
        load_depth=depth,
    )
    proposal_args = [
        {"hidden_dim": 16, "log2_hashmap_size": nerf.proposal_log2_hashmap_size, "num_levels": 5,
         "max_res": max_res, "use_linear": False}
        for max_res in (128, 256)
    ]
    model = In2nNerfactoModelConfig(
        eval_num_rays_per_chunk=nerf.eval_num_rays_per_chunk,
        average_init_density=nerf.average_init_density,
        background_color=nerf.background_color,
        hidden_dim=nerf.hidden_dim,
        hidden_dim_color=nerf.hidden_dim,
        hidden_dim_transient=nerf.hidden_dim,
        num_levels=nerf.num_levels,
        max_res=nerf.max_res,
        log2_hashmap_size=nerf.log2_hashmap_size,
        num_proposal_samples_per_ray=tuple(nerf.num_proposal_samples_per_ray),
        num_nerf_samples_per_ray=nerf.num_nerf_samples_per_ray,
        proposal_net_args_list=proposal_args,
        implementation=implementation,  # type: ignore[arg-type]
        camera_optimizer=CameraOptimizerConfig(mode=nerf.camera_optimizer),
        use_lpips=config.effective_use_lpips(),
        use_l1=nerf.use_l1,
        patch_size=patch_size,
        lpips_loss_mult=nerf.lpips_loss_mult,
        depth_loss_mult=nerf.depth_loss_mult if depth else 0.0,
        depth_sigma=nerf.depth_sigma,
        depth_sigma_start=nerf.depth_sigma_start,
        depth_sigma_decay_steps=nerf.depth_sigma_steps or nerf.reconstruction_steps,
    )
    return VanillaPipelineConfig(datamanager=datamanager, model=model)


def optimizer_config(config: EditJobConfig) -> dict[str, Any]:
    """in2n's optimisers: nerfacto's Adam for fields and proposals, in2n's weight-decayed Adam for cameras."""
    lr = config.nerf.lr
    return {
        "proposal_networks": {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr / 100, max_steps=200000),
        },
        "fields": {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr / 100, max_steps=200000),
        },
        "camera_opt": {
            "optimizer": AdamOptimizerConfig(lr=6e-4, eps=1e-8, weight_decay=1e-2),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=6e-6, max_steps=5000),
        },
    }


@contextlib.contextmanager
def quiet_nerfstudio_console() -> Iterator[None]:
    """Silence nerfstudio's rich console while it sets up: its chatter ("Setting up training dataset...", "Caching all
    N images.", a transient "Loading data batch" bar, and a warning about ``--eval-mode=all``, which the engine uses on
    purpose: every view is edited and trained on) would break the job's own progress display."""
    import rich
    from nerfstudio.utils.rich_utils import CONSOLE

    # nerfstudio's own console, and rich's global one that its image caching's ``rich.progress.track`` draws on
    consoles = [CONSOLE, rich.get_console()]
    previous = [console.quiet for console in consoles]
    for console in consoles:
        console.quiet = True
    try:
        yield
    finally:
        for console, quiet in zip(consoles, previous):
            console.quiet = quiet


def names_depth_for_every_view(scene_dir: Path) -> bool:
    """The dataparser input (``transforms.json``) names a depth image for each of its views."""
    frames = json.loads((Path(scene_dir) / "transforms.json").read_text()).get("frames", [])
    return bool(frames) and all("depth_file_path" in frame for frame in frames)


def build_pipeline(config: EditJobConfig, scene_dir: Path, device: str) -> tuple[VanillaPipeline, Optimizers]:
    """Load the scene into nerfstudio and build the model; raises LpipsWeightsMissing before any heavy work."""
    if config.effective_use_lpips():
        ensure_lpips_weights()
    # nerfstudio's image cache picks its row order with Python's ``random`` (CacheDataloader: random.sample), and
    # rays are drawn by row: without this seed two runs of one job train differently (a tiny NeRF once came out
    # fully transparent in one order and fine in another).
    random.seed(config.nerf.seed)
    torch.manual_seed(config.nerf.seed)
    depth = config.nerf.use_depth and config.nerf.depth_loss_mult > 0 and names_depth_for_every_view(scene_dir)
    with quiet_nerfstudio_console():
        pipeline = pipeline_config(config, scene_dir, device, depth=depth).setup(device=device, test_mode="val")
    assert isinstance(pipeline, VanillaPipeline)
    optimizers = Optimizers(optimizer_config(config), pipeline.get_param_groups())
    return pipeline, optimizers
