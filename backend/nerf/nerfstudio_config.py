"""A job directory nerfstudio's own tools open: ``config.yml`` as ``ns-train`` writes it, for

    ns-viewer --load-config <job>/config.yml
    ns-export pointcloud --load-config <job>/config.yml --output-dir out --normal-method open3d

It describes the job's NeRF as stock nerfstudio ``nerfacto`` (same fields and sizes: the in2n losses only matter for
training), reading the job's ``input/transforms.json`` and its ``checkpoints/step-*.ckpt``. nerfstudio's
``eval_setup`` swaps in nerfacto's own data manager and loads the newest checkpoint; the model's LPIPS metric, which
the job leaves out of its checkpoints, is rebuilt from torchvision's weights by nerfstudio as usual.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml
from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.nerfacto import NerfactoModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

from backend import atomic


def nerfstudio_config(pipeline: VanillaPipelineConfig, job_dir: Path) -> TrainerConfig:
    """The ``TrainerConfig`` of a job whose pipeline is ``pipeline`` (``backend.nerf.setup.pipeline_config``)."""
    job_dir = Path(job_dir).resolve()
    nerfacto_fields = {f.name for f in dataclasses.fields(NerfactoModelConfig)} - {"_target"}
    model = NerfactoModelConfig(**{name: getattr(pipeline.model, name) for name in nerfacto_fields})
    ours = pipeline.datamanager
    shared = ({f.name for f in dataclasses.fields(ParallelDataManagerConfig)}
              & {f.name for f in dataclasses.fields(ours)}) - {"_target"}
    datamanager = ParallelDataManagerConfig(**{name: getattr(ours, name) for name in shared})
    return TrainerConfig(
        method_name="nerfacto", experiment_name=job_dir.name, output_dir=job_dir.parent, timestamp="",
        # an absolute relative_model_dir: nerfstudio joins it to its base dir, which keeps it as it is
        relative_model_dir=job_dir / "checkpoints",
        pipeline=VanillaPipelineConfig(datamanager=datamanager, model=model),
        save_only_latest_checkpoint=False,
    )


def write_nerfstudio_config(pipeline: VanillaPipelineConfig, job_dir: Path) -> Path:
    """``<job>/config.yml`` (atomically)."""
    path = Path(job_dir) / "config.yml"
    atomic.write_bytes(path, yaml.dump(nerfstudio_config(pipeline, job_dir)).encode("utf-8"))
    return path
