"""The demo's Blender side (real bpy, Cycles): cameras, renders of chosen objects only, result handling, stdout."""

from __future__ import annotations

import math
import os
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender_addon.core.camera_model import project
from blender_addon.core.session import JobView, SessionState
from demo import blender_process, progress, run
from demo import blender_views as views
from demo import procedural_scene as ps
from demo.editor_choice import EditorChoice
from demo.recorder import ProgressSample, Recorder
from protocol import messages as m
from tests.blender.test_demo_report import read_png

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def built() -> ps.BuiltScene:
    return ps.build_scene(settings=ps.RenderSettings(samples=2, threads=2), factory_reset=False)


def elevation_deg(camera: bpy.types.Object, target: np.ndarray) -> float:
    offset = np.asarray(camera.matrix_world.translation) - target
    return math.degrees(math.asin(offset[2] / np.linalg.norm(offset)))


def test_training_cameras_form_a_collection_looking_at_the_objects_from_two_heights(built: ps.BuiltScene) -> None:
    collection, cameras = views.training_cameras(built, 6)
    assert collection.name == views.TRAINING_COLLECTION and set(collection.objects) == set(cameras)
    assert not any(camera.name in bpy.context.scene.collection.objects for camera in cameras)  # only in the collection
    target = np.asarray(built.spec.target)
    for index, camera in enumerate(cameras):
        u, v, depth = project(ps.camera_intrinsics(camera, 64, 64), [list(r) for r in camera.matrix_world],
                              tuple(target))
        assert (u, v) == pytest.approx((32, 32), abs=1e-3) and depth == pytest.approx(views.CAMERA_DISTANCE, abs=1e-4)
        assert elevation_deg(camera, target) == pytest.approx(views.TRAINING_ELEVATIONS_DEG[index % 2], abs=1e-3)


def test_turntable_cameras_go_once_around_at_one_height(built: ps.BuiltScene) -> None:
    _, cameras = views.turntable_cameras(built, 8)
    target = np.asarray(built.spec.target)
    azimuths = []
    for camera in cameras:
        assert elevation_deg(camera, target) == pytest.approx(30.0, abs=1e-3)
        offset = np.asarray(camera.matrix_world.translation) - target
        azimuths.append(math.degrees(math.atan2(offset[1], offset[0])))
    steps = np.diff(np.unwrap(np.radians(azimuths)))
    np.testing.assert_allclose(np.degrees(steps), 45.0, atol=1e-6)


def test_only_visible_renders_just_the_chosen_objects_and_restores_the_scene(built: ps.BuiltScene,
                                                                           tmp_path: Path) -> None:
    _, (camera,) = views.training_cameras(built, 1)
    scene = bpy.context.scene
    full = read_png(views.render_all([camera], tmp_path / "full", 24)[0])
    with views.only_visible([built.objects["Sphere"]], samples=1):
        assert scene.cycles.samples == 1
        assert built.objects["Cube"].hide_render and built.objects["Ground"].hide_render
        assert not built.objects["Sphere"].hide_render
        sphere_only = read_png(views.render_all([camera], tmp_path / "sphere", 24)[0])
    assert scene.cycles.samples == 2 and not any(obj.hide_render for obj in built.objects.values())
    sky = np.asarray(sphere_only[0, 0], np.int32)  # a corner: background only
    background = (np.abs(sphere_only.astype(np.int32) - sky).max(-1) <= 12).mean()
    assert background > 0.6  # without the ground most of the frame is sky
    assert (np.abs(full.astype(np.int32) - sky).max(-1) <= 12).mean() < background - 0.2
    assert (sphere_only[:, :, 0].astype(int) - sphere_only[:, :, 2] > 40).any()  # the yellow sphere is still there


def test_result_objects_prefer_baked_copies_then_the_mesh_and_bounds_are_in_world_space(built: ps.BuiltScene
                                                                                       ) -> None:
    collection = bpy.data.collections.new("result")
    bpy.context.scene.collection.children.link(collection)
    mesh_obj = bpy.data.objects.new("mesh", bpy.data.meshes.new("mesh"))
    cloud_obj = bpy.data.objects.new("cloud", bpy.data.meshes.new("cloud"))
    baked_obj = bpy.data.objects.new("baked", bpy.data.meshes.new("baked"))
    mesh_obj["in2n_kind"], cloud_obj["in2n_kind"], baked_obj["in2n_kind"] = "mesh", "pointcloud", "baked"
    for obj in (mesh_obj, cloud_obj, baked_obj):
        collection.objects.link(obj)
    assert views.result_objects(collection) == [baked_obj]
    collection.objects.unlink(baked_obj)
    assert views.result_objects(collection) == [mesh_obj]
    collection.objects.unlink(mesh_obj)
    assert views.result_objects(collection) == [cloud_obj]

    cube = built.objects["Cube"]
    spec = next(s for s in built.spec.objects if s.name == "Cube")
    low, high = views.world_bounds([cube])
    np.testing.assert_allclose(low, np.subtract(spec.location, spec.size / 2), atol=1e-5)
    np.testing.assert_allclose(high, np.add(spec.location, spec.size / 2), atol=1e-5)


def test_quiet_stdout_silences_file_descriptor_1_only_inside(capfd: pytest.CaptureFixture[str]) -> None:
    with blender_process.quiet_stdout():
        os.write(1, b"Saved: frame.png\n")
        os.write(2, b"an error\n")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == "an error\n"


def test_progress_printer_prints_phase_changes_and_throttles_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    state = SessionState()
    state.connection, state.server = "connected", None
    state.job = JobView("job-1", "running", phase="reconstructing", step=1, total_steps=100)
    recorder = Recorder(m, None)
    recorder.record.progress.append(ProgressSample("reconstructing", 1, 100, 0.0, 0.0, {"loss": 0.123456}, 0, 0.0))
    printer = progress.ProgressPrinter(state, recorder, interval_s=3600)
    printer()
    state.job.step = 2
    printer()  # same phase within the interval: silent
    state.job.phase, state.job.step = "editing", 1
    recorder.record.progress.append(ProgressSample("editing", 1, 10, 0.5, 1.0, {"loss": 0.2}, 3, 1.0))
    printer()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["[demo] Reconstructing 1/100 | loss 0.1235", "[demo] Editing 1/100, 3 edits | loss 0.2"]


def test_weights_found_in_the_cache_are_not_used_on_a_cpu_backend_unless_asked_for() -> None:
    cached = EditorChoice("/cache/ip2p", True, "huggingface cache")
    choice, note = run.plan_editor(cached, explicit=False, gpu=False)
    assert choice.simulated and not choice.real and "--editor /cache/ip2p" in note and "NOT InstructPix2Pix" in note
    choice, note = run.plan_editor(cached, explicit=True, gpu=False)
    assert choice == cached and "CPU" in note
    assert run.plan_editor(cached, explicit=False, gpu=True) == (cached, "")


def test_sheet_views_prefer_edited_views_and_near_clip_is_restored(built: ps.BuiltScene) -> None:
    _, cameras = views.training_cameras(built, 10)
    names = [camera.name for camera in cameras]
    edited = {names[i] for i in (1, 3, 4, 6, 7, 9)}  # a short schedule edited six views
    chosen = run.sheet_views(cameras, edited, 4)
    assert len(chosen) == 4 and {c.name for c in chosen} <= edited
    assert [c.name for c in run.sheet_views(cameras, {names[0]}, 4)] == [names[i] for i in (0, 2, 5, 8)]  # too few
    before = cameras[0].data.clip_start
    with views.near_clip(cameras[:2], views.RESULT_NEAR_CLIP):
        assert cameras[0].data.clip_start == pytest.approx(views.RESULT_NEAR_CLIP)
    assert cameras[0].data.clip_start == pytest.approx(before)
    assert views.RESULT_NEAR_CLIP < views.CAMERA_DISTANCE - 1.5  # every object stays in front of the clip plane
