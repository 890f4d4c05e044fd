"""Content validation: every error is a ValidationError naming the bad field."""

from __future__ import annotations

import math
from typing import Any

import pytest

import protocol
from protocol import messages as m
from protocol.schema import encode
from protocol.wire import Message, Session

from .samples import IDENTITY, camera


def parse(msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None) -> Any:
    header = Session(b"k").header(msg_type)
    return m.parse(Message(header=header, content=content, buffers=list(buffers or [])))


def begin(**changes: Any) -> dict[str, Any]:
    content = encode(m.SceneBeginRequest(upload_id="u", cameras=[camera(), camera()],
                                         images=[m.ImageInfo("uint8", [24, 32, 3])] * 2))
    content.update(changes)
    return content


def bad_camera(**changes: Any) -> dict[str, Any]:
    content = begin()
    content["cameras"][1].update(changes)
    return content


@pytest.mark.parametrize(
    ("content", "field", "text"),
    [
        (bad_camera(fl_x=0.0), "content.cameras[1].fl_x", "> 0"),
        (bad_camera(fl_y=-3), "content.cameras[1].fl_y", "> 0"),
        (bad_camera(fl_x="50"), "content.cameras[1].fl_x", "number"),
        (bad_camera(w=0), "content.cameras[1].w", ">= 1"),
        (bad_camera(w=32.5), "content.cameras[1].w", "integer"),
        (bad_camera(transform_matrix=[row[:] for row in IDENTITY[:3]]), "content.cameras[1].transform_matrix", "4x4"),
        (bad_camera(transform_matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]),
         "content.cameras[1].transform_matrix[3]", "last row"),
        (begin(images=[{"dtype": "uint8", "shape": [24, 32, 3]}]), "content.images", "image count (1) != camera count (2)"),
        (begin(images=[{"dtype": "int64", "shape": [24, 32, 3]}] * 2), "content.images[0].dtype", "one of"),
        (begin(images=[{"dtype": "uint8", "shape": [24, 31, 3]}] * 2), "content.images[0].shape", "does not match camera"),
        (begin(images=[{"dtype": "uint8", "shape": [24, 32, 2]}] * 2), "content.images[0].shape[2]", "channels"),
        (begin(upload_id="../etc"), "content.upload_id", "characters"),
        ({"cameras": [], "images": []}, "content.upload_id", "missing required field"),
    ],
)
def test_scene_begin_errors_name_the_field(content: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(protocol.ValidationError) as info:
        parse("scene_begin_request", content)
    assert info.value.field == field
    assert text in info.value.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_even_when_json_smuggles_them(value: float) -> None:
    # JSON on the wire cannot hold NaN (the decoder refuses it); a Python dict can, and must still be caught.
    content = bad_camera(transform_matrix=[[1, 0, 0, 0], [0, 1, value, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(protocol.ValidationError) as info:
        parse("scene_begin_request", content)
    assert info.value.field == "content.cameras[1].transform_matrix[1][2]"
    with pytest.raises(protocol.ValidationError) as info:
        parse("scene_begin_request", bad_camera(fl_x=value))
    assert info.value.field == "content.cameras[1].fl_x"


def test_sender_cannot_build_invalid_content() -> None:
    with pytest.raises(protocol.ValidationError) as info:
        m.build(Session(b"k"), m.EditStartRequest(scene_id="s", instruction="   "))
    assert info.value.field == "content.instruction"
    with pytest.raises(protocol.ValidationError) as info:
        m.build(Session(b"k"), m.EditStartRequest(scene_id="s", instruction="x", schedule=m.Schedule(t_min=0.9, t_max=0.1)))
    assert info.value.field == "content.schedule.t_min"


def test_unknown_fields_are_ignored_and_defaults_fill_in() -> None:
    parsed = parse("edit_start_request", {"scene_id": "s", "instruction": "snow", "future_field": {"x": 1},
                                          "schedule": {"ddim_steps": 5, "new_knob": True}})
    assert isinstance(parsed, m.EditStartRequest)
    assert parsed.schedule.ddim_steps == 5 and parsed.schedule.edit_every_n_steps == 10
    assert parsed.guidance_scale == 7.5


def test_unknown_type_is_a_typed_error() -> None:
    with pytest.raises(protocol.UnknownMessageType) as info:
        parse("teleport_request", {})
    assert info.value.field == "header.msg_type"
    assert m.reply_type_for("teleport_request") == "error_reply"
    assert m.reply_type_for("cancel_request") == "cancel_reply"


def test_buffers_must_match_their_description() -> None:
    chunk = {"upload_id": "u", "pieces": [{"image_index": 0, "offset": 0, "nbytes": 4}]}
    assert parse("scene_chunk_request", chunk, [b"abcd"]).pieces[0].nbytes == 4
    with pytest.raises(protocol.ValidationError, match="expected 1 binary buffers, got 2"):
        parse("scene_chunk_request", chunk, [b"abcd", b"x"])
    with pytest.raises(protocol.ValidationError) as info:
        parse("scene_chunk_request", chunk, [b"abc"])
    assert info.value.field == "buffers[0]"
    preview = {"job_id": "j", "step": 0, "image": {"dtype": "float32", "shape": [2, 2, 4]}}
    with pytest.raises(protocol.ValidationError, match="content describes 64"):
        parse("job_preview", preview, [bytes(16)])
    with pytest.raises(protocol.ValidationError, match="carries no binary buffers"):
        parse("ping_request", {}, [b"x"])


def test_reply_status_and_error_mapping() -> None:
    with pytest.raises(protocol.ValidationError) as info:
        parse("ping_reply", {"payload": ""})
    assert info.value.field == "content.status"
    error = parse("ping_reply", m.error_content("ValidationError", "bad focal", "content.cameras[0].fl_x"))
    with pytest.raises(protocol.ValidationError) as raised:
        m.raise_for_error(error)
    assert raised.value.field == "content.cameras[0].fl_x"
    with pytest.raises(protocol.RemoteError) as remote:
        m.raise_for_error(parse("cancel_reply", m.error_content("JobNotFound", "no job j")))
    assert remote.value.remote_ename == "JobNotFound"


def test_artifact_names_cannot_escape() -> None:
    for name in ("../x", "/etc/passwd", "a//b", "a/./b"):
        with pytest.raises(protocol.ValidationError):
            parse("job_result", {"job_id": "j", "artifacts": [{"name": name, "kind": "mesh", "size": 1, "sha256": "0" * 64}]})
