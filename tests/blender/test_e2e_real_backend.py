"""End to end against a real ``python -m backend serve`` process running real jobs with the tiny editor:
render 8 views of a small scene -> Edit -> progress events and a preview reach the Image datablock -> Import result
creates geometry whose bounding box matches the source objects'. Cancel works from the panel operator.

Skipped (with the reason) while the backend server has no job handlers (``edit_start_request`` capability).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from tests.blender.conftest import REPO_ROOT
from tests.blender.helpers import backend_python, pump_until
from tests.blender.test_edit_flow import bounds, source_objects

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

#: a small CPU nerfacto as edit_start_request.engine_overrides: the engine's tiny config
#: (backend.config.tiny_nerf_config) with the demo's larger grid, more rays and a denser start (demo/config.py
#: CPU_NERF), because the tiny one stays transparent on these renders (black background) and exports no geometry
TINY_OVERRIDES = {
    "device": "cpu",
    "editor": {"source": "tiny"},
    "nerf": {"rays_per_batch": 512, "patch_size": 1, "use_lpips": False, "hidden_dim": 16, "num_levels": 8,
             "max_res": 128, "log2_hashmap_size": 14, "proposal_log2_hashmap_size": 11,
             "num_proposal_samples_per_ray": [32, 16], "num_nerf_samples_per_ray": 24, "camera_optimizer": "off",
             "eval_num_rays_per_chunk": 8192, "implementation": "torch", "average_init_density": 0.05,
             "background_color": "random"},
    "output": {"checkpoint_every": 1000, "snapshot_every": 0, "export_num_points": 4000, "poisson_depth": 6},
}

RANDOM_ALEXNET = """
import sys, torch, torchvision
from pathlib import Path
from torchvision.models import AlexNet_Weights
target = Path(sys.argv[1]) / "hub" / "checkpoints"
target.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
torch.save(torchvision.models.alexnet(weights=None).state_dict(), target / Path(AlexNet_Weights.IMAGENET1K_V1.url).name)
"""


@pytest.fixture(scope="module")
def real_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A backend server process with job handlers (fails at once when it has none). TORCH_HOME holds RANDOM
    AlexNet weights (test-only: nerfacto builds an LPIPS metric at construction and nothing can be downloaded
    here); they are written after the capability check, before any job reads them."""
    import os
    import time

    import protocol

    tmp_path = tmp_path_factory.mktemp("real_backend")
    python = backend_python()
    torch_home = tmp_path / "torch_home"
    connection = tmp_path / "connection.json"
    log = open(tmp_path / "backend.log", "wb")
    process = subprocess.Popen([python, "-m", "backend", "serve", "--connection-file", str(connection),
                                "--no-device-probe", "--heartbeat", "1"], cwd=REPO_ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, "TORCH_HOME": str(torch_home)})
    try:
        deadline = time.monotonic() + 60
        while not connection.exists():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "backend.log").read_text()
            time.sleep(0.05)
        with protocol.Client(protocol.read_connection_file(connection), timeout_s=30) as client:
            capabilities = client.hello().capabilities or []
            assert "edit_start_request" in capabilities, f"the backend server offers only {capabilities}"
        subprocess.run([python, "-c", RANDOM_ALEXNET, str(torch_home)], check=True, timeout=300)
        yield connection
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def textured_surroundings(scene: bpy.types.Scene) -> bpy.types.Object:
    """A ground plane under the objects and a grey sky. Over a black void a small NeRF explains dim objects with
    semi-transparent density (nothing opaque to export); a backdrop that must be reproduced makes it commit to
    surfaces, as real captures do. The plane is not selected: the orbit still frames the objects."""
    selected = [obj for obj in scene.objects if obj.select_get()]
    bpy.ops.mesh.primitive_plane_add(size=3.0, location=(2.5, 1.25, 0.0))
    plane = bpy.context.active_object
    material = bpy.data.materials.new("e2e_ground")
    material.diffuse_color = (0.8, 0.35, 0.1, 1.0)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.35, 0.1, 1.0)
    plane.data.materials.append(material)
    world = scene.world or bpy.data.worlds.new("e2e_world")
    scene.world = world
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.35, 0.4, 0.5, 1.0)
    for obj in scene.objects:
        obj.select_set(obj in selected)
    return plane


def _connect(addon: ModuleType, scene: bpy.types.Scene, connection: Path) -> None:
    scene.in2n.connection_file = str(connection)
    bpy.ops.in2n.connect()
    rt = addon.bpy_shell.runtime.get()
    pump_until(addon, lambda: rt.state.connection == "connected" or bool(rt.state.last_error), timeout_s=60)
    assert rt.state.connection == "connected", rt.state.last_error


def _configure(scene: bpy.types.Scene) -> None:
    import json

    settings = scene.in2n
    settings.orbit_count, settings.resolution_x, settings.resolution_y, settings.render_samples = 8, 64, 64, 4
    settings.instruction = "make it look like marble"
    settings.reconstruction_steps, settings.total_steps, settings.edit_every_n_steps = 400, 24, 4
    settings.ddim_steps, settings.memory_mode, settings.preview_rate = 3, "in2n-tiny", 20.0
    settings.preview_max_side = 48
    settings.engine_overrides = json.dumps(TINY_OVERRIDES)


def test_render_edit_preview_import_with_real_jobs(addon: ModuleType, scene: bpy.types.Scene, real_backend: Path) -> None:
    objects = source_objects(scene) + [textured_surroundings(scene)]
    _configure(scene)
    _connect(addon, scene, real_backend)
    rt = addon.bpy_shell.runtime.get()
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    assert bpy.ops.in2n.edit() == {"FINISHED"}
    phases: set[str] = set()

    def finished() -> bool:
        if rt.state.job is not None and rt.state.job.phase:
            phases.add(rt.state.job.phase)
        return rt.state.job is not None and rt.state.job.finished

    pump_until(addon, finished, timeout_s=780)
    assert rt.state.job.state == "done", rt.state.job.error
    assert {"reconstructing", "editing"} <= phases
    assert rt.state.history, "no preview reached the add-on"
    image = bpy.data.images[addon.bpy_shell.runtime.PREVIEW_IMAGE]
    assert image.size[0] > 0 and float(np.std(addon.bpy_shell.runtime.preview_as_array())) > 0

    assert bpy.ops.in2n.import_result() == {"FINISHED"}
    pump_until(addon, lambda: bool(rt.imported), timeout_s=120)
    imported = [obj for obj in rt.imported[-1].objects if obj.type == "MESH"]
    assert imported
    low, high = bounds(imported)
    want_low, want_high = bounds(objects)
    size = float(np.linalg.norm(want_high - want_low))
    # same world frame: the reconstruction sits where the objects are (a tiny NeRF is rough, hence the tolerance)
    assert np.linalg.norm((low + high) / 2 - (want_low + want_high) / 2) < 0.35 * size
    assert 0.3 * size < float(np.linalg.norm(high - low)) < 3.0 * size


def test_cancel_a_real_job_from_the_panel(addon: ModuleType, scene: bpy.types.Scene, real_backend: Path) -> None:
    source_objects(scene)
    _configure(scene)
    scene.in2n.reconstruction_steps = 100000  # long enough to still be running when we cancel
    _connect(addon, scene, real_backend)
    rt = addon.bpy_shell.runtime.get()
    bpy.ops.in2n.generate_orbit()
    bpy.ops.in2n.edit()
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state not in ("queued", "preparing"), timeout_s=300)
    assert bpy.ops.in2n.cancel() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job.state == "cancelled", timeout_s=120)
