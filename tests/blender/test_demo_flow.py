"""The demo's whole flow in seconds: the real add-on (installed zip) and the real server core with a SCRIPTED job
(tests/blender/scripted_backend.py) whose results are a coloured point cloud on the scene's objects and solid-blue
"edited" images. Checks what the demo writes: edited images by view, contact sheet, result renders in the same world
frame, turntable, .blend, summary. The run against a real backend is ``test_demo_run.py`` (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from demo import layout
from demo import procedural_scene as ps
from demo.addon_driver import AddonDriver
from demo.config import DemoConfig
from demo.run import print_outputs, run_demo
from protocol import write_connection_file
from tests.blender.helpers import backend_python
from tests.blender.scripted_backend import ScriptedBackend, ply_bytes
from tests.blender.test_demo_report import read_png, write_png

pytestmark = pytest.mark.timeout(300)
VIEWS = 4
BLUE = (20, 40, 230)


def points_on_objects(spec: ps.SceneSpec, names: tuple[str, ...], per_object: int = 400,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Points on spheres where the named objects stand, in their colours (a stand-in reconstruction of the edited
    objects: the demo edits the selected sphere only)."""
    rng = np.random.default_rng(0)
    points, colors = [], []
    for primitive in (primitive for primitive in spec.objects if primitive.name in names):
        directions = rng.normal(size=(per_object, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        points.append(np.asarray(primitive.location) + directions * primitive.size / 2)
        colors.append(np.tile(np.round(np.asarray(primitive.color) * 255), (per_object, 1)))
    return np.concatenate(points).astype(np.float32), np.concatenate(colors).astype(np.uint8)


@pytest.fixture
def scripted(tmp_path: Path) -> ScriptedBackend:
    png = tmp_path / "blue.png"
    write_png(png, np.tile(np.asarray(BLUE, np.uint8), (32, 32, 1)))
    results: dict[str, tuple] = {"exports/point_cloud.ply": ("pointcloud", ply_bytes(*points_on_objects(
        ps.SceneSpec(), (DemoConfig.simulated_object,))))}
    for index in range(VIEWS):
        results[f"edited/frame_{index:05d}.png"] = ("image", png.read_bytes(), {"camera_index": index})
        # the NeRF's renders of the training views in two snapshots: the demo shows the newest
        for step in (3, 6):
            results[f"snapshots/step-{step:09d}/views/frame_{index:05d}.png"] = (
                "other", png.read_bytes() if step == 6 else b"old", {"snapshot_step": step, "view_camera_index": index})
    backend = ScriptedBackend(results, steps=6)
    yield backend
    backend.stop()


def png_bytes(scripted: ScriptedBackend) -> bytes:
    return scripted.results["edited/frame_00000.png"][1]


def test_demo_writes_every_output_from_the_addons_own_flow(addon: ModuleType, scene: bpy.types.Scene,
                                                          scripted: ScriptedBackend, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    connection = tmp_path / "connection.json"
    write_connection_file(connection, scripted.info)

    def connect(driver: AddonDriver) -> None:  # the panel's Connect button with the scripted server's file
        bpy.context.scene.in2n.connection_file = str(connection)
        driver.press(bpy.ops.in2n.connect, "Connect")
        driver.pump_until(lambda: driver.rt.state.connection == "connected", 30, "connecting")

    out = tmp_path / "demo_out"
    config = DemoConfig(out_dir=out, editor="simulated", views=VIEWS, size=32, samples=2, sheet_views=2,
                        turntable_frames=3, turntable_size=32, turntable_samples=2, threads=2)
    summary = run_demo(config, backend_python(), addon=addon, connect=connect, factory_reset=False)
    stdout = capsys.readouterr().out

    assert "SIMULATED editor" in stdout and "Reconstructing" in stdout and "Editing" in stdout
    assert summary["editor"] == {"source": "simulated", "origin": "simulated (asked for)", "real_weights": False,
                                 "simulated": True, "follows_instruction": False, "note": summary["editor"]["note"]}
    assert "NOT InstructPix2Pix" in summary["editor"]["note"]
    assert summary["job"]["state"] == "done" and summary["job"]["progress_events"] >= 12
    assert summary["job"]["previews_received"] >= 1 and summary["job"]["preview_image_size"] == [32, 32]
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))

    # edited images land under the names of the cameras they belong to (artifact camera_index -> uploaded order)
    names = [f"view_{i:03d}" for i in range(VIEWS)]
    assert summary["edited_views"] == names
    assert all((out / "edited" / f"{name}.png").read_bytes() == scripted.results[f"edited/frame_{i:05d}.png"][1]
               for i, name in enumerate(names))

    # the imported point cloud sits where the edited object is (same world frame), and its renders show it
    low, high = (np.asarray(b) for b in summary["result"]["world_bounds"])
    want_low, want_high = (np.asarray(b) for b in summary["result"]["source_world_bounds"])
    np.testing.assert_allclose(low, want_low, atol=0.15)
    np.testing.assert_allclose(high, want_high, atol=0.15)
    result_view = read_png(out / "result_views" / "view_000.png")
    sky = result_view[0, 0].astype(int)
    assert (np.abs(result_view.astype(int) - sky).max(-1) > 30).mean() > 0.05

    # with the views: the simulated editor's targets (Blender's renders of the sphere as blue glass), and for the
    # selected sphere each view's depth and mask
    scene_id, (begin, uploaded) = next(iter(scripted.scenes.items()))
    positions: dict[str, dict[int, int]] = {}
    for position, aux in enumerate(begin.aux_images):
        positions.setdefault(aux.role, {})[aux.camera_index] = position
    assert {role: sorted(cameras) for role, cameras in positions.items()} == {
        role: list(range(VIEWS)) for role in ("target", "depth", "edit_mask")}
    for index, name in enumerate(names):
        target = read_png(out / "scene" / "targets" / f"{name}.png")
        assert np.array_equal(scripted.aux[scene_id][positions["target"][index]], target)
        mask = scripted.aux[scene_id][positions["edit_mask"][index]]
        assert 0.005 < (mask > 127).mean() < 0.5  # the sphere, not the view
        changed = np.abs(target.astype(int) - uploaded[index].astype(int)).max(-1) > 40
        assert 0.005 < changed.mean() < 0.5  # the sphere changed, the rest of the view did not
        assert (target[changed][:, 2].astype(int) > target[changed][:, 0]).mean() > 0.5  # towards blue
    transforms = json.loads((out / "scene" / "transforms.json").read_text())
    assert [f["target_file_path"] for f in transforms["frames"]] == [f"targets/{n}.png" for n in names]
    # the NeRF column shows each view's newest history render
    assert all((out / "nerf_renders" / f"{name}.png").read_bytes() == png_bytes(scripted) for name in names)

    # the baseline: each photo edited once by the simulated editor at the top of the noise range, which is the
    # intended edit plus that view's own inconsistencies
    for name in names:
        single = read_png(out / "single_edits" / f"{name}.png").astype(float)
        target = read_png(out / "scene" / "targets" / f"{name}.png").astype(float)
        original = read_png(out / "scene" / "images" / f"{name}.png").astype(float)
        assert np.abs(single - target).mean() < np.abs(single - original).mean()
        assert not np.array_equal(single, target)

    sheet = read_png(Path(summary["outputs"]["contact_sheet"]))
    _, boxes = layout.grid([[None] * 5] * 2, 192, gap=6, top=78 + 26, left=90)
    for row in boxes:  # original | intended edit | single 2D edit | NeRF after DU | imported result
        assert tuple(sheet[row[3].top + 5, row[3].left + 5]) == BLUE  # the NeRF's (scripted) render
    for part in ("result", "original", "target"):
        assert len(list((out / "turntable" / part).glob("*.png"))) == 3
    scores = summary["scores"]
    assert set(scores) == {"single_2d_edits", "nerf_after_du", "imported_result_heldout"}
    assert scores["nerf_after_du"]["views"] == VIEWS and scores["imported_result_heldout"]["views"] == 3
    print_outputs(summary, out)
    printed = capsys.readouterr().out
    assert "NeRF after Iterative DU (training views): edited region" in printed and "SIMULATED editor" in printed
    for key in ("blend", "loss_plot", "turntable_gif", "turntable_strip"):
        assert Path(summary["outputs"][key]).stat().st_size > 0, key
    assert set(summary["timings_s"]) >= {"scene_and_addon", "edit_job", "render_outputs", "report", "total"}


def test_a_job_without_geometry_fails_the_demo_with_the_reason_and_stops_there(addon: ModuleType, scene: bpy.types.Scene,
                                                                               tmp_path: Path) -> None:
    from demo.addon_driver import DemoError

    png = tmp_path / "blue.png"
    write_png(png, np.tile(np.asarray(BLUE, np.uint8), (16, 16, 1)))
    backend = ScriptedBackend({"edited/frame_00000.png": ("image", png.read_bytes(), {"camera_index": 0})}, steps=2)
    connection = tmp_path / "connection.json"
    write_connection_file(connection, backend.info)

    def connect(driver: AddonDriver) -> None:
        bpy.context.scene.in2n.connection_file = str(connection)
        driver.press(bpy.ops.in2n.connect, "Connect")
        driver.pump_until(lambda: driver.rt.state.connection == "connected", 30, "connecting")

    config = DemoConfig(out_dir=tmp_path / "out", editor="tiny", views=2, size=16, samples=1, threads=2)
    try:
        with pytest.raises(DemoError, match="without geometry to import .*--reconstruction-steps"):
            run_demo(config, backend_python(), addon=addon, connect=connect, factory_reset=False)
    finally:
        backend.stop()
    assert not (tmp_path / "out" / "summary.json").exists()
