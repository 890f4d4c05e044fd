"""Framing, signing, replay protection, limits and versions, without sockets."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

import protocol
from protocol import messages as m
from protocol.signing import ReplayCache
from protocol.wire import DELIMITER, Limits, Session

from .samples import samples


@pytest.mark.parametrize("msg_type", sorted(samples()))
def test_every_message_type_round_trips(pair: tuple[Session, Session], msg_type: str) -> None:
    sender, receiver = pair
    content, buffers = samples()[msg_type]
    message = m.build(sender, content, buffers=buffers)
    frames = [bytes(f) for f in sender.serialize(message)]
    decoded = receiver.deserialize(frames)
    assert decoded.header == message.header
    assert m.parse(decoded) == content
    assert [bytes(b) for b in decoded.buffers] == buffers


def test_samples_cover_the_whole_registry() -> None:
    assert set(samples()) == set(m.REGISTRY)


def test_reply_copies_parent_header_and_routing_ids(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    request = m.build(sender, m.PingRequest(payload="p"))
    request.idents = [b"client-1"]
    reply = m.build(receiver, m.PingReply(payload="p"), parent=request)
    assert reply.parent_header == request.header and reply.idents == [b"client-1"]
    frames = receiver.serialize(reply)
    assert frames[0] == b"client-1" and frames[1] == DELIMITER
    assert sender.deserialize(frames[1:]).content["status"] == "ok"


def test_buffers_are_signed(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    content, buffers = _chunk()
    frames = [bytes(f) for f in sender.serialize(m.build(sender, content, buffers=buffers))]
    frames[-1] = b"x" + frames[-1][1:]
    with pytest.raises(protocol.BadSignature):
        receiver.deserialize(frames)


def test_bytes_cannot_move_across_frame_boundaries(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    content = m.SceneChunkRequest(upload_id="u", pieces=[m.ChunkPiece(0, 0, 2), m.ChunkPiece(0, 2, 2)])
    frames = [bytes(f) for f in sender.serialize(m.build(sender, content, buffers=[b"ab", b"cd"]))]
    frames[-2], frames[-1] = b"abc", b"d"  # same concatenation, different split
    with pytest.raises(protocol.BadSignature):
        receiver.deserialize(frames)


def test_wrong_key_and_missing_signature_are_rejected() -> None:
    frames = Session(b"key-a").serialize(Session(b"key-a").msg("ping_request"))
    with pytest.raises(protocol.BadSignature, match="same key"):
        Session(b"key-b").deserialize(frames)
    unsigned = Session(b"").serialize(Session(b"").msg("ping_request"))
    with pytest.raises(protocol.BadSignature, match="not signed"):
        Session(b"key-b").deserialize(unsigned)


def test_replayed_message_is_rejected_and_the_cache_forgets_only_after_its_window() -> None:
    sender, receiver = Session(b"k"), Session(b"k")
    first = sender.serialize(sender.msg("ping_request"))
    receiver.deserialize(first)
    with pytest.raises(protocol.ReplayedMessage):
        receiver.deserialize(first)
    for _ in range(100):  # a flood of fresh messages does not push the first one out (sized by time, not count)
        receiver.deserialize(sender.serialize(sender.msg("ping_request")))
    with pytest.raises(protocol.ReplayedMessage):
        receiver.deserialize(first)
    cache = ReplayCache(window_s=10)
    cache.check_and_add(b"sig", now=100.0)
    with pytest.raises(protocol.ReplayedMessage):
        cache.check_and_add(b"sig", now=109.0)
    cache.check_and_add(b"other", now=111.0)  # past the window: "sig" is forgotten, and may be seen again
    assert b"sig" not in cache and len(cache) == 1


def _dated(sender: Session, seconds_from_now: float) -> list[bytes]:
    message = sender.msg("ping_request")
    when = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    message.header["date"] = when.isoformat().replace("+00:00", "Z")
    return [bytes(f) for f in sender.serialize(message)]


def test_signed_messages_outside_the_replay_window_are_refused() -> None:
    sender, receiver = Session(b"k"), Session(b"k", replay_window_s=60)
    receiver.deserialize(_dated(sender, -30))  # inside the window
    for offset in (-61, 61):  # a capture from two minutes ago, or a message from the future
        with pytest.raises(protocol.ReplayedMessage) as info:
            receiver.deserialize(_dated(sender, offset))
        assert info.value.field == "header.date"
    message = sender.msg("ping_request")
    message.header["date"] = "yesterday"
    with pytest.raises(protocol.MalformedMessage, match="ISO-8601"):
        receiver.deserialize(sender.serialize(message))


def test_a_server_refuses_messages_dated_before_it_started() -> None:
    """A restarted server with a fixed key must not accept what was captured from its predecessor."""
    sender = Session(b"fixed-key")
    captured = _dated(sender, -5)
    Session(b"fixed-key").deserialize(captured)  # the old server took it
    restarted = Session(b"fixed-key", not_before=time.time())
    with pytest.raises(protocol.ReplayedMessage, match="before this server started"):
        restarted.deserialize(captured)
    restarted.deserialize(_dated(sender, 0.5))  # new messages pass


@pytest.mark.parametrize(("raw", "what"), [
    (b'{"payload": 1e999}', "out of range"),
    (b'{"payload": -1e400}', "out of range"),
    (b'{"payload": NaN}', "not allowed"),
    (b'{"payload": "\\ud800"}', "surrogate"),
    (b'{"\\udfff": "key"}', "surrogate"),
    (b'{"nested": [{"deep": ["\\ud83d"]}]}', "surrogate"),
])
def test_content_that_could_never_be_encoded_again_is_malformed(raw: bytes, what: str) -> None:
    """json.loads accepts these; a reply echoing them (or a stored record) could never be written back."""
    sender, receiver = Session(b"k"), Session(b"k")
    frames = [bytes(f) for f in sender.serialize(sender.msg("ping_request"))]
    frames[-1] = raw  # the content frame, re-signed below as a key-holding peer would
    frames[1] = sender.signer.sign(frames[2:])
    with pytest.raises(protocol.MalformedMessage, match=what) as info:
        receiver.deserialize(frames)
    assert info.value.field == "content"


def test_a_valid_surrogate_pair_is_ordinary_text(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    frames = [bytes(f) for f in sender.serialize(sender.msg("ping_request"))]
    frames[-1] = b'{"payload": "\\ud83d\\ude00"}'
    frames[1] = sender.signer.sign(frames[2:])
    assert receiver.deserialize(frames).content["payload"] == "\U0001F600"


def test_retry_with_same_msg_id_is_not_a_replay(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    a = receiver.deserialize(sender.serialize(sender.msg("ping_request", msg_id="same")))
    b = receiver.deserialize(sender.serialize(sender.msg("ping_request", msg_id="same")))
    assert a.msg_id == b.msg_id == "same"


def test_header_fields_are_required(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    for name in ("msg_id", "session", "msg_type", "protocol_version", "date"):
        message = sender.msg("ping_request")
        del message.header[name]
        with pytest.raises(protocol.MalformedMessage) as info:
            receiver.deserialize(sender.serialize(message))
        assert info.value.field == f"header.{name}"


def test_version_mismatch_is_named_but_hello_is_exempt(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    message = sender.msg("ping_request")
    message.header["protocol_version"] = "1.1"  # the protocol before the job-state vocabulary
    with pytest.raises(protocol.VersionMismatch, match="1.1"):
        receiver.deserialize(sender.serialize(message))
    hello = m.build(sender, m.HelloRequest(protocol_versions=["9.0"]))
    hello.header["protocol_version"] = "9.0"
    decoded = receiver.deserialize(sender.serialize(hello))
    with pytest.raises(protocol.VersionMismatch, match="no common protocol version"):
        protocol.negotiate(m.parse(decoded).protocol_versions)
    assert protocol.negotiate(["1.1", "2.7"]) == protocol.PROTOCOL_VERSION


def test_oversized_frames_and_messages() -> None:
    limits = Limits(max_frame_bytes=100, max_message_bytes=1000, max_json_bytes=500, max_buffers=2)
    sender, receiver = Session(b"k"), Session(b"k", limits=limits)
    big = sender.serialize(m.build(sender, m.SceneChunkRequest(upload_id="u", pieces=[m.ChunkPiece(0, 0, 101)]), buffers=[bytes(101)]))
    with pytest.raises(protocol.OversizedMessage) as info:
        receiver.deserialize(big)
    assert info.value.field == "buffers[0]"
    many = sender.serialize(sender.msg("x", buffers=[b"1", b"2", b"3"]))
    with pytest.raises(protocol.OversizedMessage, match="3 buffers"):
        receiver.deserialize(many)
    long_json = sender.serialize(sender.msg("ping_request", {"payload": "x" * 600}))
    with pytest.raises(protocol.OversizedMessage) as info:
        receiver.deserialize(long_json)
    assert info.value.field == "content"


def test_nan_is_refused_on_both_sides(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    with pytest.raises(protocol.ValidationError):
        sender.serialize(sender.msg("ping_request", {"payload": float("nan")}))
    frames = [bytes(f) for f in sender.serialize(sender.msg("ping_request"))]
    frames[5] = b'{"payload": NaN}'
    frames[1] = sender.signer.sign(frames[2:])
    with pytest.raises(protocol.MalformedMessage) as info:
        receiver.deserialize(frames)
    assert info.value.field == "content"


def test_json_parts_must_be_objects(pair: tuple[Session, Session]) -> None:
    sender, receiver = pair
    frames = [bytes(f) for f in sender.serialize(sender.msg("ping_request"))]
    frames[3] = json.dumps([1, 2]).encode()
    frames[1] = sender.signer.sign(frames[2:])
    with pytest.raises(protocol.MalformedMessage) as info:
        receiver.deserialize(frames)
    assert info.value.field == "parent_header"


def _chunk() -> tuple[m.SceneChunkRequest, list[bytes]]:
    return m.SceneChunkRequest(upload_id="u", pieces=[m.ChunkPiece(0, 0, 4)]), [b"abcd"]
