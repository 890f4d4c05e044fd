"""Steering an edit from Blender against a real backend with the tiny editor (issue 12): the 2D preview grid
arrives with the right cells and sets the guidance; the modal render can be cancelled and leaves the scene's
render settings as they were; a snapshot imported mid-job yields geometry; a cancelled job's result imports; a
chained edit starts from a snapshot (and, cancelled, leaves a snapshot that imports)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from tests.blender.helpers import pump_until
from tests.blender.test_e2e_real_backend import TINY_OVERRIDES, _connect, textured_surroundings
from tests.blender.test_edit_flow import bounds, source_objects

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def configure(scene: bpy.types.Scene, *, total_steps: int, snapshot_every: int) -> None:
    settings = scene.in2n
    settings.orbit_count, settings.resolution_x, settings.resolution_y, settings.render_samples = 8, 64, 64, 4
    settings.instruction = "make it look like marble"
    settings.reconstruction_steps, settings.total_steps, settings.edit_every_n_steps = 400, total_steps, 4
    settings.ddim_steps, settings.memory_mode, settings.preview_rate = 3, "in2n-tiny", 2.0
    settings.snapshot_every, settings.snapshot_views = snapshot_every, 2
    overrides = json.loads(json.dumps(TINY_OVERRIDES))
    del overrides["output"]["snapshot_every"]  # the panel's snapshot settings, not the overrides'
    settings.engine_overrides = json.dumps(overrides)


def state(addon: ModuleType):  # type: ignore[no-untyped-def]
    return addon.bpy_shell.runtime.get().state


def test_try_in_2d_then_render_cancel_restores_the_scene(addon: ModuleType, scene: bpy.types.Scene,
                                                        real_backend: Path) -> None:
    source_objects(scene)
    configure(scene, total_steps=24, snapshot_every=0)
    _connect(addon, scene, real_backend)
    rt = addon.bpy_shell.runtime.get()
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    cameras = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    scene.camera = cameras[2]
    settings = scene.in2n
    settings.trial_guidance_scales, settings.trial_image_guidance_scales = "5, 9", "1.2, 1.5, 2"

    started = time.monotonic()
    assert bpy.ops.in2n.preview_instruction() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.steering.preview is not None and rt.state.steering.preview.done,
               timeout_s=300)
    preview = rt.state.steering.preview
    assert not preview.failed, preview.failed
    print(f"2D preview: first cell {preview.first_cell_s:.2f} s after the request, grid after "
          f"{time.monotonic() - started:.2f} s (rendering the view included)")
    assert preview.columns == [5.0, 9.0] and preview.rows == [1.2, 1.5, 2.0]
    assert sorted(preview.cells) == list(range(6)) and preview.cells[1] == (9.0, 1.2)
    grid = bpy.data.images[addon.bpy_shell.images.GRID_IMAGE]
    assert tuple(grid.size) == (2 * preview.cell_width, 3 * preview.cell_height)
    assert preview.cell_width >= 64 and not grid.is_float
    # a click on the grid picks its cell: the bottom-right one is text 9, image 2
    assert preview.scales_at(1.5 * preview.cell_width, 2.5 * preview.cell_height) == (9.0, 2.0)
    assert bpy.ops.in2n.use_preview_cell(guidance_scale=9.0, image_guidance_scale=2.0) == {"FINISHED"}
    assert (settings.guidance_scale, settings.image_guidance_scale) == (9.0, 2.0)
    assert not bpy.ops.in2n.cancel_preview.poll()  # nothing running

    # a long preview (1,000 diffusion steps a cell) is cancelled from the panel: the backend stops it
    ddim_steps, settings.ddim_steps = settings.ddim_steps, 1000
    assert bpy.ops.in2n.preview_instruction() == {"FINISHED"}
    settings.ddim_steps = ddim_steps
    pump_until(addon, lambda: rt.state.steering.preview is not preview and bpy.ops.in2n.cancel_preview.poll(),
               timeout_s=120)
    assert bpy.ops.in2n.cancel_preview() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.steering.preview.done, timeout_s=120)
    assert rt.state.steering.preview.grid is None and rt.state.steering.preview.progress_text() == "Preview cancelled"

    # Edit renders one view per step; Cancel stops it and the scene's render settings come back
    render = scene.render
    before = (render.resolution_x, render.resolution_y, render.resolution_percentage, render.filepath,
              render.image_settings.file_format, scene.cycles.samples, scene.camera)
    jobs_before = rt.state.job
    assert bpy.ops.in2n.edit() == {"FINISHED"}
    pump_until(addon, lambda: rt.task is not None and rt.task.state == "rendering" and rt.task.render.done >= 2,
               timeout_s=120)
    assert (render.resolution_x, render.resolution_y) == (64, 64)  # the session's settings while it renders
    assert bpy.ops.in2n.cancel() == {"FINISHED"}
    task = rt.finished_tasks[-1]
    assert task.state == "cancelled" and 2 <= task.render.done < len(cameras)
    assert (render.resolution_x, render.resolution_y, render.resolution_percentage, render.filepath,
            render.image_settings.file_format, scene.cycles.samples, scene.camera) == before
    assert rt.state.job is jobs_before and rt.state.upload is None  # nothing was uploaded
    print(f"longest main-thread step while rendering: {task.render.longest_step_s * 1000:.1f} ms, of which the "
          f"session's own work {task.render.longest_overhead_s * 1000:.1f} ms (the rest: a render done in place, "
          "which Blender's render job runs off the main thread when there is a window)")


def test_snapshots_import_mid_job_and_a_chained_edit_starts_from_one(addon: ModuleType, scene: bpy.types.Scene,
                                                                     real_backend: Path) -> None:
    objects = source_objects(scene) + [textured_surroundings(scene)]
    configure(scene, total_steps=160, snapshot_every=20)
    _connect(addon, scene, real_backend)
    rt = addon.bpy_shell.runtime.get()
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    assert bpy.ops.in2n.edit() == {"FINISHED"}

    def scheduled() -> list:
        return [v for v in rt.state.steering.sorted_snapshots() if v.info.reason == "scheduled"]

    pump_until(addon, lambda: bool(scheduled()), timeout_s=600)
    first = scheduled()[0]
    assert rt.state.job is not None and not rt.state.job.finished
    asked = time.monotonic()
    assert bpy.ops.in2n.import_snapshot(step=first.step) == {"FINISHED"}
    pump_until(addon, lambda: any(c.name.endswith(f"step {first.step}") for c in rt.imported), timeout_s=300)
    print(f"importing snapshot {first.step} mid-job took {time.monotonic() - asked:.1f} s "
          f"({first.info.size_bytes / 2**20:.2f} MiB on disk)")
    collection = rt.imported[-1]
    meshes = [obj for obj in collection.objects if obj.type == "MESH" and len(obj.data.vertices)]
    assert meshes, "the snapshot's import has no geometry"
    low, high = bounds(meshes)
    want_low, want_high = bounds(objects)
    size = float(np.linalg.norm(want_high - want_low))
    assert np.linalg.norm((low + high) / 2 - (want_low + want_high) / 2) < 0.35 * size  # in the scene's frame
    pump_until(addon, lambda: rt.state.job.finished, timeout_s=600)
    assert rt.state.job.state == "done", rt.state.job.error
    assert rt.state.history, "no live preview reached the add-on"
    assert float(np.std(addon.bpy_shell.runtime.preview_as_array())) > 0
    # the job's own result imports too, in the same world frame as the objects
    assert bpy.ops.in2n.import_result() == {"FINISHED"}
    pump_until(addon, lambda: rt.imported[-1].name.startswith(f"in2n result {rt.state.job.job_id}"), timeout_s=120)
    result = [obj for obj in rt.imported[-1].objects if obj.type == "MESH"]
    low, high = bounds(result)
    assert np.linalg.norm((low + high) / 2 - (want_low + want_high) / 2) < 0.35 * size
    assert 0.3 * size < float(np.linalg.norm(high - low)) < 3.0 * size
    views = rt.state.steering.sorted_snapshots()
    assert [v.info.reason for v in views][0] == "reconstruction" and views[-1].info.reason == "final"
    pump_until(addon, lambda: all(bpy.data.images.get(f"in2n snapshot {v.step}") for v in views), timeout_s=60)
    first_job = rt.state.job.job_id
    # pinned on the backend: listed again from there, it stays pinned (its job never rotates it away)
    assert bpy.ops.in2n.pin_snapshot(step=first.step) == {"FINISHED"}
    pump_until(addon, lambda: rt.state.steering.snapshots[first.step].info.pinned)
    pump_until(addon, lambda: any(f"Snapshot {first.step} pinned" in r.message for r in rt.reports))
    time.sleep(1.0)  # its nerf_snapshot event too
    addon.bpy_shell.runtime.pump()
    rt.state.steering.snapshots[first.step].info = dataclasses.replace(first.info, pinned=False)
    assert bpy.ops.in2n.refresh_snapshots() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.steering.snapshots[first.step].info.pinned)
    assert "pinned" in rt.state.steering.snapshots[first.step].label()

    # a chained edit from the final snapshot: a new job, no reconstruction, the same scene; it runs until cancelled
    scene.in2n.instruction, scene.in2n.total_steps = "then make it green", 100000
    assert bpy.ops.in2n.edit_from_snapshot(step=views[-1].step) == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job.job_id != first_job, timeout_s=60)
    phases: set[str] = set()

    def editing_a_while() -> bool:
        phases.add(rt.state.job.phase)
        return rt.state.job.phase == "editing" and rt.state.job.step >= 8

    pump_until(addon, editing_a_while, timeout_s=600)
    assert "reconstructing" not in phases
    assert rt.state.steering.sorted_snapshots()[0].info.step == views[-1].step  # it started there

    # cancelled, it has no final result, but a snapshot where it stopped, which imports
    assert bpy.ops.in2n.cancel() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job.state == "cancelled", timeout_s=120)
    assert not bpy.ops.in2n.import_result.poll()
    pump_until(addon, lambda: any(v.info.reason == "stopped" for v in rt.state.steering.snapshots.values()),
               timeout_s=60)
    stopped = next(v for v in rt.state.steering.snapshots.values() if v.info.reason == "stopped")
    assert bpy.ops.in2n.import_snapshot(step=stopped.step) == {"FINISHED"}
    pump_until(addon, lambda: any(c.name.endswith(f"step {stopped.step}") for c in rt.imported), timeout_s=300)
    assert any(obj.type == "MESH" and len(obj.data.vertices) for obj in rt.imported[-1].objects)
    assert bpy.ops.in2n.continue_job.poll()
