"""Exporting a NeRF snapshot as a mesh and a point cloud, on request: between the steps of the running job (its
pipeline, with the snapshot's weights swapped in and back), or for a job that is not running (its NeRF rebuilt from
the job directory's config.json and input/). Either way the files land in the snapshot's ``export/`` folder, which
later requests reuse."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

from backend.config import EditJobConfig
from backend.export import ExportProgress, export_geometry
from backend.job.jobdir import JobDir, read_json_object
from backend.job.snapshots import SnapshotExport, SnapshotStore
from backend.nerf.frames import DataparserTransform

ProgressCallback = Callable[[ExportProgress], None]


def export_into(pipeline, transform: DataparserTransform, store: SnapshotStore, step: int, config: EditJobConfig,
                stop: threading.Event, on_progress: ProgressCallback) -> SnapshotExport:
    """Export ``pipeline``'s NeRF (whose weights are the snapshot's) into the snapshot's ``export/``."""
    folder = store.folder(step)
    result = export_geometry(pipeline, transform, store.export_dir(step), config.output, stop.is_set,
                             rays_per_chunk=config.nerf.eval_num_rays_per_chunk, on_progress=on_progress)
    export = SnapshotExport(mesh=result.mesh.relative_to(folder).as_posix(),
                            point_cloud=result.point_cloud.relative_to(folder).as_posix(),
                            num_points=result.num_points, num_vertices=result.num_vertices,
                            num_faces=result.num_faces, bounds_min=result.bounds_min, bounds_max=result.bounds_max,
                            textured_mesh=(result.textured_mesh.relative_to(folder).as_posix()
                                           if result.textured_mesh is not None else None),
                            extra_files=[path.relative_to(folder).as_posix() for path in result.extra_files])
    store.write_export(step, export)
    return export


def export_stored_snapshot(job_dir: Path, step: int, device: str, stop: threading.Event,
                           on_progress: ProgressCallback) -> SnapshotExport:
    """Export snapshot ``step`` of a job that is not running (cached exports are returned as they are)."""
    from backend.editing.memory import resolve_device
    from backend.nerf.setup import build_pipeline
    from backend.nerf.trainer import NerfTrainer

    jobs = JobDir(job_dir)
    store = SnapshotStore(jobs.snapshots)
    cached = store.read_export(step)
    if cached is not None:
        return cached
    if store.read(step) is None:
        raise FileNotFoundError(f"{store.folder(step)}: no such snapshot")
    config = EditJobConfig.from_dict(read_json_object(jobs.config))
    # the export renders colour and depth only: no LPIPS network (nor its weights) is needed to build the model
    config = dataclasses.replace(config, nerf=dataclasses.replace(config.nerf, use_lpips=False))
    pipeline, optimizers = build_pipeline(config, jobs.root / "input", resolve_device(device))
    NerfTrainer(pipeline, optimizers).load_checkpoint(store.model(step), weights_only=True)
    return export_into(pipeline, DataparserTransform.of_pipeline(pipeline), store, step, config, stop, on_progress)
