"""Exporting a NeRF snapshot as a mesh and a point cloud, on request: between the steps of the running job (its
pipeline, with the snapshot's weights swapped in and back), or for a job that is not running (its NeRF rebuilt from
the job directory's config.json and input/). Either way the files land in the snapshot's ``export/`` folder, which
later requests reuse."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from backend import atomic
from backend.bake import BakeError, BakeView, bake_surfaces
from backend.config import EditJobConfig
from backend.export import ExportError, ExportProgress, export_geometry
from backend.job.jobdir import JobDir, read_json_object
from backend.job.snapshots import BakedRecord, SnapshotExport, SnapshotStore
from backend.nerf.frames import DataparserTransform
from backend.nerf.trainer import NerfTrainer
from backend.surfaces import Surface, read_surfaces
from protocol.messages import DEPTH_UNIT_SCALE

ProgressCallback = Callable[[ExportProgress], None]


def export_into(trainer: NerfTrainer, transform: DataparserTransform, store: SnapshotStore, step: int,
                config: EditJobConfig, stop: threading.Event, on_progress: ProgressCallback, *,
                geometry: bool = True) -> SnapshotExport:
    """Export ``trainer``'s NeRF (whose weights are the snapshot's) into the snapshot's ``export/``: textures baked
    onto the scene's surfaces (when it has any), then (``geometry``) the point cloud and mesh. Geometry that cannot
    be made (a NeRF still transparent, a failed meshing) is said in ``geometry_error`` while the rest stands; only
    an export that gives nothing at all raises :class:`ExportError`."""
    folder, out_dir = store.folder(step), store.export_dir(step)
    surfaces = read_surfaces(Path(trainer.datamanager.config.dataparser.data))
    baked = bake_into(trainer, transform, surfaces, out_dir, config.output.bake_resolution, stop, on_progress)
    export = SnapshotExport(mesh=None, point_cloud=None, baked=[
        {**record, "texture": (out_dir / record["texture"]).relative_to(folder).as_posix()} for record in baked])
    if not geometry:
        store.write_export(step, export)
        return export
    try:
        result = export_geometry(trainer.pipeline, transform, out_dir, config.output, stop.is_set,
                                 rays_per_chunk=config.nerf.eval_num_rays_per_chunk, on_progress=on_progress)
    except ExportError as error:
        if not baked or stop.is_set():
            raise
        export.geometry_error = f"no geometry exported: {error}"
    else:
        relative = lambda path: path.relative_to(folder).as_posix() if path is not None else None  # noqa: E731
        export.mesh, export.point_cloud = relative(result.mesh), relative(result.point_cloud)
        export.num_points, export.num_vertices, export.num_faces = result.num_points, result.num_vertices, result.num_faces
        export.bounds_min, export.bounds_max = result.bounds_min, result.bounds_max
        export.textured_mesh = relative(result.textured_mesh)
        export.extra_files = [path.relative_to(folder).as_posix() for path in result.extra_files]
        export.geometry_error = result.mesh_error
    store.write_export(step, export)
    return export


def bake_views(trainer: NerfTrainer, transform: DataparserTransform) -> list[BakeView]:
    """The training cameras (their optimised poses) in nerfstudio's frame, with each view's depth image from Blender
    when the job trains with depth (the nearest surface of the whole scene: what may hide the user's objects)."""
    outputs = trainer.datamanager.train_dataparser_outputs
    depth_files = (outputs.metadata or {}).get("depth_filenames") or []
    views = []
    for view in range(len(outputs.image_filenames)):
        camera = trainer.training_camera(view)
        depth = None
        if view < len(depth_files):
            millimetres = np.asarray(Image.open(depth_files[view]), dtype=np.float64)
            depth = millimetres * DEPTH_UNIT_SCALE * transform.scale
        views.append(BakeView(camera.camera_to_worlds[0].detach().cpu().double().numpy(), float(camera.fx[0, 0]),
                              float(camera.fy[0, 0]), float(camera.cx[0, 0]), float(camera.cy[0, 0]),
                              int(camera.width[0, 0]), int(camera.height[0, 0]), depth))
    return views


def bake_into(trainer: NerfTrainer, transform: DataparserTransform, surfaces: tuple[Surface, ...], out_dir: Path,
              resolution: int, stop: threading.Event, on_progress: ProgressCallback) -> list[BakedRecord]:
    """``out_dir/baked/<i>.png`` for each surface (texture paths relative to ``out_dir``); none without surfaces."""
    if not surfaces:
        return []

    def progress(done: int, total: int) -> None:
        on_progress(ExportProgress(done, total, 0, 1))

    try:
        textures = bake_surfaces(surfaces, bake_views(trainer, transform),
                                 lambda view: trainer.render_view(view).cpu().numpy(), resolution,
                                 transform.points_to_nerfstudio, stop.is_set, progress)
    except BakeError as error:
        raise ExportError(str(error)) from None
    records: list[BakedRecord] = []
    for index, texture in enumerate(textures):
        name = f"baked/{index:03d}.png"
        atomic.write_png(out_dir / name, texture.image)
        records.append({"name": texture.surface.name, "object_name": texture.surface.object_name, "texture": name,
                        "coverage": round(texture.coverage, 4)})
    return records


def export_stored_snapshot(job_dir: Path, step: int, device: str, stop: threading.Event,
                           on_progress: ProgressCallback) -> SnapshotExport:
    """Export snapshot ``step`` of a job that is not running (cached exports are returned as they are)."""
    store = SnapshotStore(JobDir(job_dir).snapshots)
    cached = store.read_export(step)
    if cached is not None:
        return cached
    trainer, transform, config = load_snapshot(job_dir, step, device)
    return export_into(trainer, transform, store, step, config, stop, on_progress)


def load_snapshot(job_dir: Path, step: int, device: str) -> tuple[NerfTrainer, DataparserTransform, EditJobConfig]:
    """The NeRF of snapshot ``step`` of a job that is not running, rebuilt from its ``config.json`` and ``input/``."""
    from backend.editing.memory import resolve_device
    from backend.nerf.setup import build_pipeline

    jobs = JobDir(job_dir)
    store = SnapshotStore(jobs.snapshots)
    if store.read(step) is None:
        raise FileNotFoundError(f"{store.folder(step)}: no such snapshot")
    config = EditJobConfig.from_dict(read_json_object(jobs.config))
    # it renders colour and depth only: no LPIPS network (nor its weights) is needed to build the model
    config = dataclasses.replace(config, nerf=dataclasses.replace(config.nerf, use_lpips=False))
    pipeline, optimizers = build_pipeline(config, jobs.root / "input", resolve_device(device))
    trainer = NerfTrainer(pipeline, optimizers)
    trainer.load_checkpoint(store.model(step), weights_only=True)
    return trainer, DataparserTransform.of_pipeline(pipeline), config
