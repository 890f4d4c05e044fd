"""The mesh fused from the NeRF's rendered depth (TSDF, as ns-export tsdf) on a real tiny depth-supervised job: it
lies on the true surfaces and inside the export region; Poisson's skin over the same snapshot is measured beside it
(printed: on these 32 px scenes the two are close, Poisson a little closer by median, so it stays the default)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from plyfile import PlyData

from backend.config import DatasetUpdateConfig, EditJobConfig, OutputConfig, tiny_nerf_config
from backend.engine import EditEngine
from backend.job.snapshot_export import export_stored_snapshot
from backend.job.snapshots import SnapshotStore
from backend.job.types import JobCallbacks
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import make_tiny_scene

pytestmark = [pytest.mark.timeout(900)]


def distance_to_spheres(points: np.ndarray, scene) -> np.ndarray:
    centers = np.array([scene.center + scene.scale * np.array(s.center) for s in scene.spheres])
    radii = np.array([scene.scale * s.radius for s in scene.spheres])
    return np.abs(np.linalg.norm(points[:, None] - centers[None], axis=-1) - radii[None]).min(axis=1)


def vertices(path) -> np.ndarray:
    vertex = PlyData.read(str(path))["vertex"]
    return np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1)


@pytest.mark.slow
def test_the_fused_mesh_lies_on_the_surfaces_inside_the_region(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32, depth=True)
    low, high = scene.object_bounds()
    margin = 0.1 * (high - low)
    config = EditJobConfig(
        prompt="swap red and blue", device="cpu", nerf=tiny_nerf_config(reconstruction_steps=300),
        update=DatasetUpdateConfig(total_steps=4, edit_every_n_steps=2),
        output=OutputConfig(checkpoint_every=1000, snapshot_every=0, export_num_points=4000, poisson_depth=6,
                            mesh_method="tsdf", tsdf_resolution=96, region_min=(low - margin).tolist(),
                            region_max=(high + margin).tolist()))
    result = EditEngine(config, ChannelSwapEditor()).run(scene.path, tmp_path / "job", JobCallbacks())
    assert result.status == "done", result.error
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert manifest["geometry_error"] is None and manifest["num_mesh_faces"] > 100
    fused = vertices(tmp_path / "job" / manifest["mesh"])
    assert ((fused >= low - 1.01 * margin) & (fused <= high + 1.01 * margin)).all()  # inside the region
    radius = scene.scale * scene.spheres[0].radius

    # the same snapshot meshed with Poisson, for comparison
    job = tmp_path / "job"
    stored = json.loads((job / "config.json").read_text())
    stored["output"]["mesh_method"] = "poisson"
    (job / "config.json").write_text(json.dumps(stored))
    store = SnapshotStore(job / "snapshots")
    step = store.steps()[-1]
    (store.export_dir(step) / "export.json").unlink()
    export = export_stored_snapshot(job, step, "cpu", threading.Event(), lambda progress: None)
    poisson = vertices(store.folder(step) / export.mesh)
    fused_error = float(np.median(distance_to_spheres(fused, scene)))
    poisson_error = float(np.median(distance_to_spheres(poisson, scene)))
    print(f"median distance to the spheres: tsdf {fused_error / radius:.3f}, poisson {poisson_error / radius:.3f} "
          "of the main sphere's radius")
    assert fused_error < 0.1 * radius and poisson_error < 0.1 * radius
