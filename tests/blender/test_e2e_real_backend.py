"""End to end against a real ``python -m backend serve`` process running real jobs with the tiny editor: the
settings these tests share, and Cancel from the panel operator. (Render -> Edit -> previews -> Import result, snapshots
and chained edits: ``test_steering_real_backend.py``.)
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import bpy
import pytest

from tests.blender.helpers import pump_until
from tests.blender.test_edit_flow import source_objects

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
