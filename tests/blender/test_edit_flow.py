"""The panel's operators against the real server core with a scripted job: render 8 views -> Edit -> progress and
previews into the Image datablock -> Import result; Cancel; disconnect / reconnect mid-job; clear error reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

import protocol
from protocol import messages as m
from protocol.wire import utc_now
from tests.blender.helpers import evaluated_pointcloud, pump_until
from tests.blender.scripted_backend import ScriptedBackend, ply_bytes, preview_for

pytestmark = pytest.mark.timeout(240)


def source_objects(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """A small scene away from the origin: a cube and a sphere, rendered with Cycles (works headless)."""
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(2.0, 1.0, 0.5))
    cube = bpy.context.active_object
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.6, location=(3.0, 1.5, 0.8), segments=16, ring_count=8)
    sphere = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 5))
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    for obj in scene.objects:
        obj.select_set(obj in (cube, sphere))
    return [cube, sphere]


def world_points(objects: list[bpy.types.Object]) -> np.ndarray:
    points = []
    for obj in objects:
        local = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
        obj.data.vertices.foreach_get("co", local)
        matrix = np.array(obj.matrix_world)
        points.append((matrix[:3, :3] @ local.reshape(-1, 3).T).T + matrix[:3, 3])
    return np.concatenate(points)


def bounds(objects: list[bpy.types.Object]) -> tuple[np.ndarray, np.ndarray]:
    points = world_points(objects)
    return points.min(axis=0), points.max(axis=0)


@pytest.fixture
def edit_scene(addon: ModuleType, scene: bpy.types.Scene, tmp_path: Path) -> Iterator[tuple[list[bpy.types.Object], ScriptedBackend]]:
    objects = source_objects(scene)
    points = world_points(objects)
    colors = np.tile(np.array([[200, 30, 40]], np.uint8), (len(points), 1))
    backend = ScriptedBackend({"pointcloud.ply": ("pointcloud", ply_bytes(points, colors)),
                               "images/frame_00000.png": ("image", b"\x89PNG not read")})
    connection = tmp_path / "connection.json"
    protocol.write_connection_file(connection, backend.info)
    settings = scene.in2n
    settings.connection_file = str(connection)
    settings.orbit_count, settings.resolution_x, settings.resolution_y, settings.render_samples = 8, 32, 24, 2
    settings.instruction = "make it look like marble"
    yield objects, backend
    backend.stop()


def connect(addon: ModuleType) -> None:
    assert bpy.ops.in2n.connect() == {"FINISHED"}
    pump_until(addon, lambda: addon.bpy_shell.runtime.get().state.connection == "connected")


def start_held_edit(addon: ModuleType, backend: ScriptedBackend):  # -> the add-on's Runtime
    """Connect and start an edit of the orbit views; the scripted job waits before its export until the test
    opens ``backend.gate`` (or cancels it)."""
    backend.gate.clear()
    connect(addon)
    bpy.ops.in2n.generate_orbit()
    bpy.ops.in2n.edit()
    return addon.bpy_shell.runtime.get()


def test_render_edit_preview_import(addon: ModuleType, scene: bpy.types.Scene, edit_scene) -> None:
    objects, backend = edit_scene
    assert not bpy.ops.in2n.edit.poll()  # not connected yet: disabled
    connect(addon)
    rt = addon.bpy_shell.runtime.get()
    assert rt.state.status_line().startswith(f"Connected (protocol {protocol.PROTOCOL_VERSION})")
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    cameras = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    assert len(cameras) == 8

    assert bpy.ops.in2n.edit() == {"FINISHED"}
    progress_seen: set[str] = set()

    def running() -> bool:
        job = rt.state.job
        if job is not None and job.phase:
            progress_seen.add(rt.state.progress_text().split(" ")[0])
        return job is not None and job.state == "done"

    pump_until(addon, running, timeout_s=120)
    assert {"Reconstructing", "Editing"} <= progress_seen

    # the server received 8 rendered 32x24 views with the exported cameras
    begin, images = next(iter(backend.scenes.values()))
    assert len(images) == 8 and all(img.shape == (24, 32, 3) for img in images)
    assert np.std(images[0]) > 1.0  # a real render, not a blank image
    k = addon.bpy_shell.cameras.camera_intrinsics(cameras[0], scene, (32, 24))
    assert begin.cameras[0].fl_x == pytest.approx(k.fl_x) and begin.cameras[0].w == 32
    job = backend.jobs[rt.state.job.job_id]
    assert job.request.instruction == "make it look like marble" and job.request.schedule.total_steps == 15000

    # previews reached the one Image datablock (in place): sRGB bytes in a byte sRGB image (a float image is taken
    # as linear and shows them washed out), exactly the pixels the backend sent
    image = bpy.data.images[addon.bpy_shell.runtime.PREVIEW_IMAGE]
    assert [s.step for s in rt.state.history] == [4, 8, 12]
    assert not image.is_float and image.colorspace_settings.name == "sRGB"
    pixels = addon.bpy_shell.runtime.preview_as_array().reshape(24, 32, 4)
    expected = preview_for(images[0], 12, 12)
    np.testing.assert_allclose(pixels[::-1, :, :3], expected / 255.0, atol=0.5 / 255)
    assert len([img for img in bpy.data.images if img.name.startswith("in2n preview")]) == 1
    # it was shown behind the camera it shows (the job's first training camera), and left it when the job ended
    assert not any(bg.image == image for camera in cameras for bg in camera.data.background_images)

    # import result: geometry in the source objects' world frame, colours as attribute Col
    assert scene.in2n.job_id == rt.state.job.job_id
    assert bpy.ops.in2n.import_result() == {"FINISHED"}
    pump_until(addon, lambda: bool(rt.imported))
    collection = rt.imported[-1]
    imported = [obj for obj in collection.objects if obj.get("in2n_kind") == "pointcloud"]
    assert len(imported) == 1
    low, high = bounds(imported)
    want_low, want_high = bounds(objects)
    np.testing.assert_allclose(low, want_low, atol=1e-4)
    np.testing.assert_allclose(high, want_high, atol=1e-4)
    colors = imported[0].data.color_attributes["Col"]
    assert colors.domain == "POINT"
    rgb = np.empty(len(colors.data) * 4, dtype=np.float32)
    colors.data.foreach_get("color_srgb", rgb)
    np.testing.assert_allclose(rgb.reshape(-1, 4)[:, :3], np.tile([[200 / 255, 30 / 255, 40 / 255]], (len(colors.data), 1)), atol=1e-3)
    # shown as points (loose vertices alone are invisible in object mode), same place after evaluation
    assert imported[0].modifiers["in2n points"].node_group.name.startswith("in2n points")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    _owner, cloud = evaluated_pointcloud(imported[0], depsgraph)
    assert cloud is not None and len(cloud.points) == len(imported[0].data.vertices)
    positions = np.empty(len(cloud.points) * 3, dtype=np.float32)
    cloud.attributes["position"].data.foreach_get("vector", positions)
    np.testing.assert_allclose(positions.reshape(-1, 3).min(axis=0), want_low, atol=1e-4)
    assert cloud.materials[0].name == "in2n vertex colours"

def test_simulated_editor_targets_travel_with_the_rendered_views(addon: ModuleType, scene: bpy.types.Scene,
                                                                 edit_scene, tmp_path: Path) -> None:
    """A camera naming a target image (``PROP_TARGET``) uploads it with its view; a target of the wrong size stops
    Edit before anything is uploaded, naming the camera."""
    from tests.blender.test_demo_report import write_png

    _, backend = edit_scene
    connect(addon)
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}
    cameras = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    rng = np.random.default_rng(0)
    targets = {1: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), 5: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)}
    for index, target in targets.items():
        cameras[index][addon.bpy_shell.cameras.PROP_TARGET] = str(tmp_path / write_png(tmp_path / f"t{index}.png", target))
    write_png(tmp_path / "small.png", targets[1][:12])
    cameras[3][addon.bpy_shell.cameras.PROP_TARGET] = str(tmp_path / "small.png")
    rt = addon.bpy_shell.runtime.get()
    renders = addon.bpy_shell.runtime.scratch_dir("renders", scene.name)
    rendered_before = sorted(renders.glob("*.png"))
    with pytest.raises(RuntimeError, match=f"Edit failed: camera '{cameras[3].name}'.*is 32x12, the view is 32x24"):
        bpy.ops.in2n.edit()
    assert not backend.scenes and sorted(renders.glob("*.png")) == rendered_before  # stopped before rendering
    del cameras[3][addon.bpy_shell.cameras.PROP_TARGET]

    assert bpy.ops.in2n.edit() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state == "done", timeout_s=120)
    scene_id, (begin, _) = next(iter(backend.scenes.items()))
    uploaded_targets = [(aux.camera_index, image) for aux, image in zip(begin.aux_images, backend.aux[scene_id])
                        if aux.role == "target"]
    assert [camera for camera, _ in uploaded_targets] == [1, 5]
    for camera, image in uploaded_targets:
        assert np.array_equal(image, targets[camera])
    # depth from Blender is on by default: every view's depth travels too
    assert sorted(aux.camera_index for aux in begin.aux_images if aux.role == "depth") == list(range(len(cameras)))


def test_cancel_from_the_panel(addon: ModuleType, scene: bpy.types.Scene, edit_scene) -> None:
    objects, backend = edit_scene
    rt = start_held_edit(addon, backend)  # the job waits before export until cancelled
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state == "editing" and bool(rt.state.history))
    assert not bpy.ops.in2n.edit.poll()  # one job at a time
    # the live preview shows camera 0's view: behind that camera only
    cameras = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    preview = bpy.data.images[addon.bpy_shell.runtime.PREVIEW_IMAGE]
    behind = [camera.name for camera in cameras if any(bg.image == preview for bg in camera.data.background_images)]
    assert behind == [cameras[0].name] and cameras[0].data.show_background_images
    assert bpy.ops.in2n.cancel() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job.state == "cancelled")
    assert backend.jobs[rt.state.job.job_id].cancel.is_set()
    assert not any(bg.image == preview for camera in cameras for bg in camera.data.background_images)  # job over
    assert not bpy.ops.in2n.cancel.poll()
    assert any("cancelled" in r.message for r in rt.reports)


def test_progress_the_server_dropped_is_caught_up_by_listing_the_jobs(addon: ModuleType, scene: bpy.types.Scene,
                                                                      edit_scene) -> None:
    """Protocol 2.4: a server that merged or dropped events this add-on read too slowly says so in its heartbeats
    (``dropped_events``); the add-on lists the jobs and shows the followed job's progress from the list."""
    objects, backend = edit_scene
    rt = start_held_edit(addon, backend)
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.phase == "editing"
               and rt.state.job.step == backend.steps)
    job = backend.jobs[rt.state.job.job_id]
    # the progress event of this state was dropped by the server: only the job list has it
    job.progress = m.Progress(phase="editing", step=5, total_steps=backend.steps, fraction=0.5, eta_s=30.0)
    beat = m.Heartbeat(server_time=utc_now(), interval_s=0.3, dropped_events=4)
    backend.server.publish(job.job_id, beat)
    pump_until(addon, lambda: rt.state.job.step == 5)
    assert rt.state.progress_text() == "Editing 5/12, ETA 30s" and rt.state.job.state == "editing"
    job.progress = m.Progress(phase="editing", step=6, total_steps=backend.steps, fraction=0.55, eta_s=29.0)
    backend.server.publish(job.job_id, beat)  # the same count again: nothing more was dropped, no second listing
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        addon.bpy_shell.runtime.pump()
        time.sleep(0.02)
    assert rt.state.job.step == 5
    bpy.ops.in2n.cancel()
    pump_until(addon, lambda: rt.state.job.state == "cancelled")


def test_disconnect_mid_job_then_reconnect_picks_it_up(addon: ModuleType, scene: bpy.types.Scene, edit_scene) -> None:
    objects, backend = edit_scene
    rt = start_held_edit(addon, backend)
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state == "editing")
    job_id = rt.state.job.job_id
    assert bpy.ops.in2n.disconnect() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.connection == "disconnected")
    # a fresh Blender session: nothing but the job id saved in the .blend
    addon.bpy_shell.runtime.shutdown()
    assert scene.in2n.job_id == job_id
    backend.gate.set()  # the job finishes while nobody is connected
    deadline = time.monotonic() + 30
    while backend.jobs[job_id].state != "done" and time.monotonic() < deadline:
        time.sleep(0.01)
    connect(addon)
    rt = addon.bpy_shell.runtime.get()
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state == "done")
    assert rt.state.job.job_id == job_id and rt.state.job.has_results
    assert [s.step for s in rt.state.history] == [12]  # the latest preview is resent on reconnect
    assert bpy.ops.in2n.import_result.poll()


def test_errors_become_reports(addon: ModuleType, scene: bpy.types.Scene, tmp_path: Path) -> None:
    settings = scene.in2n
    # backend not running: a stale connection file pointing at a closed port
    backend = ScriptedBackend({})
    stale = protocol.ConnectionInfo(host="127.0.0.1", port=backend.info.port, key=backend.info.key)
    backend.stop()
    protocol.write_connection_file(tmp_path / "stale.json", stale)
    rt = addon.bpy_shell.runtime.get()
    vendored = addon.core.protocol_link.protocol  # the add-on's own copy: its exception classes are the ones it knows
    rt.worker._client_factory = lambda info: vendored.Client(info, timeout_s=0.5, retries=0)
    settings.connection_file = str(tmp_path / "stale.json")
    bpy.ops.in2n.connect()
    pump_until(addon, lambda: bool(rt.state.last_error))
    assert "no answer from the backend" in rt.state.last_error and rt.state.connection == "disconnected"

    # wrong key
    backend = ScriptedBackend({})
    try:
        wrong = protocol.ConnectionInfo(host="127.0.0.1", port=backend.info.port, key="not-the-key")
        protocol.write_connection_file(tmp_path / "wrong.json", wrong)
        settings.connection_file = str(tmp_path / "wrong.json")
        rt.state.last_error = ""
        bpy.ops.in2n.connect()
        pump_until(addon, lambda: bool(rt.state.last_error))
        assert "key does not match" in rt.state.last_error
    finally:
        backend.stop()

    # missing connection file
    settings.connection_file = str(tmp_path / "missing.json")
    rt.state.last_error = ""
    bpy.ops.in2n.connect()
    pump_until(addon, lambda: bool(rt.state.last_error))
    assert "no such connection file" in rt.state.last_error
    assert all(r.level == "ERROR" for r in rt.reports if "failed" in r.message)


def test_version_mismatch_and_lost_connection(addon: ModuleType, scene: bpy.types.Scene, tmp_path: Path) -> None:
    backend = ScriptedBackend({})
    try:
        def old_hello(request):  # a backend that only speaks protocol 2.x
            raise protocol.VersionMismatch("no common protocol version: this side speaks 2.0", field="content.protocol_versions")

        backend.server.register("hello_request", old_hello)
        protocol.write_connection_file(tmp_path / "c.json", backend.info)
        scene.in2n.connection_file = str(tmp_path / "c.json")
        rt = addon.bpy_shell.runtime.get()
        bpy.ops.in2n.connect()
        pump_until(addon, lambda: bool(rt.state.last_error))
        assert "protocol version mismatch" in rt.state.last_error
    finally:
        backend.stop()

    backend = ScriptedBackend({}, heartbeat_s=0.2)
    protocol.write_connection_file(tmp_path / "c.json", backend.info)
    rt.state.last_error = ""
    connect(addon)
    backend.stop()  # the backend dies while we are connected
    pump_until(addon, lambda: rt.state.connection == "lost", timeout_s=30)
    assert "lost the connection" in rt.state.last_error
    assert bpy.ops.in2n.connect.poll()  # the user can connect again


def test_connect_by_address(addon: ModuleType, scene: bpy.types.Scene) -> None:
    backend = ScriptedBackend({})
    try:
        settings = scene.in2n
        settings.connection_mode, settings.host, settings.port = "ADDRESS", "127.0.0.1", backend.info.port
        bpy.context.window_manager.in2n_key = ""
        assert bpy.ops.in2n.connect.poll()
        settings.host = "192.0.2.1"  # not this machine, without a key
        expected = "key is required" if bpy.app.online_access else "online access is disabled"
        with pytest.raises(RuntimeError, match=expected):
            bpy.ops.in2n.connect()
        settings.host, bpy.context.window_manager.in2n_key = "127.0.0.1", backend.info.key
        connect(addon)
        assert addon.bpy_shell.runtime.get().state.url == f"tcp://127.0.0.1:{backend.info.port}"
    finally:
        backend.stop()


def test_selected_objects_only_uploads_depth_masks_and_the_region_and_hides_the_originals(
        addon: ModuleType, scene: bpy.types.Scene, edit_scene) -> None:
    """What Blender knows goes with each view: its z-depth (exact, from a second render with a material override)
    and the selected objects' mask; the request names their bounds; Import hides the originals on request; the
    scene's render settings come back as they were."""
    objects, backend = edit_scene
    cube, sphere = objects
    connect(addon)
    rt = addon.bpy_shell.runtime.get()
    assert bpy.ops.in2n.generate_orbit() == {"FINISHED"}  # around both objects
    cameras = addon.bpy_shell.cameras.collection_cameras(scene.in2n.camera_collection)
    for obj in scene.objects:
        obj.select_set(obj == sphere)
    settings = scene.in2n
    settings.edit_scope, settings.use_depth, settings.region_margin, settings.hide_originals = "SELECTED", True, 0.1, True
    settings.depth_while_editing = not settings.depth_while_editing  # the panel's choice travels, default or not
    layer = bpy.context.view_layer
    before = (layer.material_override, scene.render.film_transparent, scene.render.engine, cube.pass_index,
              sphere.pass_index, scene.cycles.use_denoising)
    assert bpy.ops.in2n.edit() == {"FINISHED"}
    pump_until(addon, lambda: rt.state.job is not None and rt.state.job.state == "done", timeout_s=180)
    assert (layer.material_override, scene.render.film_transparent, scene.render.engine, cube.pass_index,
            sphere.pass_index, scene.cycles.use_denoising) == before

    scene_id, (begin, images) = next(iter(backend.scenes.items()))
    roles = [(aux.camera_index, aux.role) for aux in begin.aux_images]
    assert roles == [(i, role) for i in range(8) for role in ("depth", "edit_mask")]
    aux = backend.aux[scene_id]
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for index in (0, 3):
        depth, mask = aux[2 * index].reshape(24, 32), aux[2 * index + 1].reshape(24, 32)
        assert depth.dtype == np.float32 and mask.dtype == np.uint8
        assert 0 < (mask > 0).mean() < 0.6  # the sphere, not the cube or the background
        # z-depth at the mask's centre is where Blender's own ray cast hits the sphere
        rows, columns = np.nonzero(mask)
        v, u = int(np.median(rows)), int(np.median(columns))
        camera = cameras[index]
        k = addon.bpy_shell.cameras.camera_intrinsics(camera, scene, (32, 24))
        c2w = np.array(camera.matrix_world)
        direction = c2w[:3, :3] @ np.array([(u + 0.5 - k.cx) / k.fl_x, -(v + 0.5 - k.cy) / k.fl_y, -1.0])
        hit, location, *_ = scene.ray_cast(depsgraph, c2w[:3, 3], direction / np.linalg.norm(direction))
        assert hit
        expected = float(-(np.linalg.inv(c2w) @ np.append(np.array(location), 1.0))[2])
        assert depth[v, u] == pytest.approx(expected, rel=1e-3)
        assert depth[mask == 0].max() > 0  # the cube and the ground have depth too, outside the mask
    request = backend.jobs[rt.state.job.job_id].request
    low, high = bounds([sphere])
    grow = 0.1 * np.linalg.norm(high - low)
    np.testing.assert_allclose(request.edit_region.bounds_min, low - grow, atol=1e-4)
    np.testing.assert_allclose(request.edit_region.bounds_max, high + grow, atol=1e-4)
    assert request.use_depth and request.depth_while_editing == settings.depth_while_editing

    assert bpy.ops.in2n.import_result() == {"FINISHED"}
    pump_until(addon, lambda: bool(rt.imported))
    assert sphere.hide_get() and sphere.hide_render and not cube.hide_get()  # the edited object's original hides
