"""Selected objects come back as copies of themselves with the edit baked on (issue 20), against a real backend with
the tiny editor: their geometry is the user's own, their texture is packed, the originals are hidden; results
imported earlier stay out of the new edit's views and masks; objects no camera shows are refused before upload."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from tests.blender.helpers import pump_until
from tests.blender.test_bake_surfaces import evaluated_world_triangles
from tests.blender.test_e2e_real_backend import TINY_OVERRIDES, _connect, textured_surroundings
from tests.blender.test_edit_flow import source_objects

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def configure(scene: bpy.types.Scene) -> None:
    settings = scene.in2n
    settings.orbit_count, settings.resolution_x, settings.resolution_y, settings.render_samples = 8, 64, 64, 4
    settings.instruction = "make it look like marble"
    # a short NeRF: the bake's colours come from its renders whatever it learnt (quality: the backend's tests)
    settings.reconstruction_steps, settings.total_steps, settings.edit_every_n_steps = 60, 4, 2
    settings.ddim_steps, settings.memory_mode = 3, "in2n-tiny"
    settings.edit_scope, settings.result, settings.bake_resolution, settings.use_depth = "SELECTED", "BAKED", 128, True
    settings.engine_overrides = json.dumps(TINY_OVERRIDES)


def test_selected_objects_come_back_baked_onto_copies_of_themselves(addon: ModuleType, scene: bpy.types.Scene,
                                                                   real_backend: Path) -> None:
    cube, sphere = source_objects(scene)
    textured_surroundings(scene)
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.9, location=cube.location)  # an earlier import hiding the cube
    blob = bpy.context.active_object
    blob["in2n_kind"] = "mesh"
    for obj in scene.objects:
        obj.select_set(obj in (cube, sphere))
    configure(scene)
    _connect(addon, scene, real_backend)
    rt = addon.bpy_shell.runtime.get()
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    assert bpy.ops.in2n.edit() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.finished, timeout_s=600)
    job = rt.state.job
    assert job.state == "done", job.error
    assert blob.hide_render is False  # shown again after the renders it was left out of
    log = (real_backend.parent / "backend.log").read_text()
    masked = [line for line in log.splitlines() if f"[{job.job_id}] local edits:" in line]
    assert masked and "(0% of their pixels" not in masked[0], masked  # the blob did not cover the cube's mask
    baked = [a for a in job.artifacts if "baked_surface" in a.metadata and "snapshot_step" not in a.metadata]
    assert sorted(a.metadata["object_name"] for a in baked) == sorted([cube.name, sphere.name])
    assert all(a.metadata["coverage"] > 0.5 for a in baked), [a.metadata for a in baked]
    assert not any(a.kind in ("mesh", "pointcloud") for a in job.artifacts)  # 'Edited appearance' only

    assert bpy.ops.in2n.import_result() == {"FINISHED"}
    pump_until(addon, lambda: bool(rt.imported), timeout_s=120)
    copies = {obj["in2n_baked_from"]: obj for obj in scene.objects if obj.get("in2n_kind") == "baked"}
    assert sorted(copies) == sorted([cube.name, sphere.name])
    for original in (cube, sphere):
        copy = copies[original.name]
        assert np.allclose(evaluated_world_triangles(copy), evaluated_world_triangles(original), atol=1e-5)
        image = next(n for n in copy.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE").image
        assert image.packed_file is not None and tuple(image.size) == (128, 128)
        pixels = np.empty(128 * 128 * 4, np.float32)
        image.pixels.foreach_get(pixels)
        assert float(pixels.reshape(-1, 4)[:, :3].std()) > 0.01  # a texture, not a flat fill
        assert original.hide_render and original.hide_get()  # the copy replaces the original in the scene


def test_objects_no_camera_shows_are_refused_before_upload(addon: ModuleType, scene: bpy.types.Scene,
                                                          real_backend: Path) -> None:
    cube, sphere = source_objects(scene)
    configure(scene)
    _connect(addon, scene, real_backend)
    rt = addon.bpy_shell.runtime.get()
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    for obj in (cube, sphere):
        obj.location.z += 500.0  # far above every camera's view
    assert bpy.ops.in2n.edit() == {"FINISHED"}
    pump_until(addon, lambda: bool(rt.finished_tasks), timeout_s=300)
    task = rt.finished_tasks[-1]
    assert task.state == "failed" and "cover 0.00% of the pixels" in task.error, task.error
    assert cube.name in task.error and "Show them, move the cameras closer" in task.error
    assert rt.state.job is None and rt.state.upload is None  # nothing was uploaded
