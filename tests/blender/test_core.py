"""bpy-free core: camera model inverse (property-based), transforms.json validation, session state machine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blender_addon.core import session as ss
from blender_addon.core import worker_api as api
from blender_addon.core.camera_model import BlenderCamera, Intrinsics, blender_from_intrinsics, intrinsics_from_blender
from blender_addon.core.pixels import from_blender_pixels, to_blender_pixels
from capture import CaptureError, capture_to_json, parse_capture
from protocol import messages as m

pytestmark = pytest.mark.timeout(60)


@settings(max_examples=300, deadline=None)
@given(fl_x=st.floats(5, 5000), ratio=st.floats(0.5, 2.0), w=st.integers(8, 4096), h=st.integers(8, 4096),
       cx_frac=st.floats(-0.5, 1.5), cy_frac=st.floats(-0.5, 1.5), sensor=st.floats(5, 70))
def test_blender_settings_reproduce_any_pinhole(fl_x: float, ratio: float, w: int, h: int, cx_frac: float,
                                                cy_frac: float, sensor: float) -> None:
    wanted = Intrinsics(fl_x, fl_x / ratio, cx_frac * w, cy_frac * h, w, h)
    settings_ = blender_from_intrinsics(wanted, sensor_width=sensor)
    assert settings_.pixel_aspect_x >= 1 and settings_.pixel_aspect_y >= 1  # Blender's constraint
    got = intrinsics_from_blender(settings_)
    for name in ("fl_x", "fl_y", "cx", "cy"):
        assert getattr(got, name) == pytest.approx(getattr(wanted, name), rel=1e-9, abs=1e-9), name


def test_sensor_fit_rules() -> None:
    base = dict(lens=50.0, sensor_width=36.0, sensor_height=24.0, shift_x=0.1, shift_y=0.1)
    landscape = intrinsics_from_blender(BlenderCamera(**base, sensor_fit="AUTO", width=400, height=200))
    portrait = intrinsics_from_blender(BlenderCamera(**base, sensor_fit="AUTO", width=200, height=400))
    vertical = intrinsics_from_blender(BlenderCamera(**base, sensor_fit="VERTICAL", width=400, height=200))
    assert landscape.fl_x == pytest.approx(50 / 36 * 400)  # sensor width spans the wider side
    assert portrait.fl_x == pytest.approx(50 / 36 * 400)  # AUTO: still sensor_width, now along the height
    assert portrait.cx == pytest.approx(100 - 0.1 * 400)  # shift in units of the longer side
    assert vertical.fl_y == pytest.approx(50 / 24 * 200)  # VERTICAL: sensor_height spans the height
    with pytest.raises(ValueError, match="lens"):
        intrinsics_from_blender(BlenderCamera(**{**base, "lens": 0.0}, sensor_fit="AUTO", width=4, height=4))


def test_capture_errors_name_the_field() -> None:
    frame = {"file_path": "a.png", "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}
    good = {"fl_x": 10, "fl_y": 10, "cx": 5, "cy": 5, "w": 10, "h": 10}
    assert parse_capture({**good, "frames": [frame]}).frames[0].intrinsics.w == 10
    cases = [({**good, "frames": []}, "frames: must be a non-empty list"),
             ({**good, "fl_x": -1, "frames": [frame]}, r"transforms.json: fl_x: must be > 0"),  # the top-level value
             ({**good, "frames": [{**frame, "fl_y": 0}]}, r"frames\[0\]\.fl_y: must be > 0"),
             ({**good, "frames": [{**frame, "cx": float("nan")}]}, r"frames\[0\]\.cx: expected a finite number"),
             ({**good, "frames": [{**frame, "transform_matrix": [[1, 0]]}]}, r"frames\[0\]\.transform_matrix"),
             ({**good, "frames": [{"transform_matrix": frame["transform_matrix"]}]}, r"frames\[0\]\.file_path")]
    for data, message in cases:
        with pytest.raises(CaptureError, match=message):
            parse_capture(data)
    # writing keeps the meaning: per-frame values override the shared (most common) ones
    frames = [frame, {**frame, "file_path": "b.png", "fl_x": 20}, {**frame, "file_path": "c.png"}]
    written = capture_to_json(parse_capture({**good, "frames": frames}))
    assert written["fl_x"] == 10 and written["frames"][1]["fl_x"] == 20 and "fl_x" not in written["frames"][2]


def test_pixels_round_trip_and_orientation() -> None:
    import numpy as np

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    flat = to_blender_pixels(image)
    assert flat.dtype == np.float32 and flat.shape == (2 * 3 * 4,)
    assert flat[:4].tolist() == pytest.approx([image[1, 0, 0] / 255, image[1, 0, 1] / 255, image[1, 0, 2] / 255, 1.0])
    np.testing.assert_array_equal(from_blender_pixels(flat, 3, 2), image)


def _hello() -> m.HelloReply:
    return m.HelloReply(protocol_version="2.0", server_name="srv", server_version="0", python_version="3.11", pid=1,
                        limits=m.ServerLimits(max_frame_bytes=1, max_message_bytes=1), gpu_name="Test GPU")


def _snap(job_id: str, state: str) -> m.JobSnapshot:
    return m.JobSnapshot(job_id=job_id, state=state, scene_id="s", instruction="x",
                         progress=m.Progress(phase="editing", step=3, total_steps=10, fraction=0.4, eta_s=75.0))


def test_session_follows_the_remembered_job_on_connect() -> None:
    state = ss.SessionState()
    actions = state.apply(api.Connected("tcp://x", _hello(), [_snap("a", "editing"), _snap("b", "done")]),
                          remembered_job_id="b")
    assert state.job.job_id == "b" and ss.RememberJob("b") in actions
    state = ss.SessionState()
    state.apply(api.Connected("tcp://x", _hello(), [_snap("a", "editing"), _snap("b", "done")]))
    assert state.job.job_id == "a"  # nothing remembered: the unfinished job
    assert state.progress_text() == "Editing 3/10, ETA 1m 15s" and state.progress_fraction() == 0.4
    assert "GPU: Test GPU" in state.status_line()


def test_session_events_and_failures() -> None:
    state = ss.SessionState()
    state.apply(api.Connected("tcp://x", _hello(), []))
    assert state.job is None
    state.apply(api.JobStarted("j", "queued", 2, "s"))
    assert state.progress_text() == "Queued (position 2)" and "queue position 2" in state.status_line()
    assert state.apply(api.ServerEvent(m.JobProgressEvent(job_id="other", progress=_snap("o", "editing").progress))) == []
    actions = state.apply(api.ServerEvent(m.JobStateEvent(job_id="j", state="failed", error_name="OutOfMemory",
                                                          error_message="CUDA out of memory")))
    assert actions == [ss.Report("ERROR", "Edit job j failed: OutOfMemory: CUDA out of memory")]
    assert state.progress_text() == "Failed: OutOfMemory: CUDA out of memory" and not state.busy
    assert state.apply(api.ServerEvent(m.JobLogEvent(text="low memory", level="warning", job_id="j"))) == \
        [ss.Report("WARNING", "low memory")]
    actions = state.apply(api.Disconnected(reason="lost it"))
    assert state.connection == "lost" and actions == [ss.Report("ERROR", "lost it")]


def test_the_export_phase_shows_its_share_of_the_ray_budget() -> None:
    state = ss.SessionState()
    exporting = m.JobSnapshot(job_id="a", state="exporting", scene_id="s", instruction="x",
                              progress=m.Progress(phase="exporting", step=55_296, total_steps=221_184, fraction=1.0,
                                                  eta_s=12.0))
    state.apply(api.Connected("tcp://x", _hello(), [exporting]))
    assert state.progress_text() == "Exporting geometry 25%, ETA 12s"
