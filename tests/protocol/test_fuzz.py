"""Property-based fuzzing of the decoder: >= 10,000 malformed, truncated, re-signed, replayed and oversized messages.

Each must end in a typed ProtocolError (or decode cleanly); any other exception is a bug. No sockets: every case is
``Session.deserialize`` + ``messages.parse`` on in-memory frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import messages as m
from protocol.wire import DELIMITER, Limits, Session

from .samples import samples

pytestmark = pytest.mark.timeout(600)

KEY = b"fuzz-key"
EXAMPLES = 2000  # per property; 6 properties -> 12,000 cases
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

SAMPLES = samples()
SENDER = Session(KEY)
VALID: list[list[bytes]] = [
    [bytes(f) for f in SENDER.serialize(m.build(SENDER, content, buffers=buffers))]
    for content, buffers in SAMPLES.values()
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def decode(receiver: Session, frames: list[bytes]) -> Any:
    """The server's decode path. Returns the parsed content or the ProtocolError; anything else propagates."""
    try:
        return m.parse(receiver.deserialize(frames))
    except protocol.ProtocolError as exc:
        assert exc.ename and str(exc)
        return exc


def resign(frames: list[bytes], key: bytes = KEY) -> list[bytes]:
    delim = frames.index(DELIMITER)
    frames[delim + 1] = Session(key).signer.sign(frames[delim + 2 :])
    return frames


def run(prop: Callable[..., None], *strategies: st.SearchStrategy[Any]) -> int:
    count = 0

    @FUZZ
    @given(st.tuples(*strategies))
    def inner(args: tuple[Any, ...]) -> None:
        nonlocal count
        count += 1
        prop(*args)

    inner()
    return count


def test_random_frames() -> None:
    frame = st.binary(max_size=64) | st.just(DELIMITER) | st.sampled_from([b"{}", b"[]", b"null", b'{"msg_type": 1}'])

    def prop(frames: list[bytes]) -> None:
        decode(Session(KEY), frames)

    assert run(prop, st.lists(frame, max_size=10)) >= EXAMPLES * 0.9


def test_truncated_messages() -> None:
    def prop(index: int, keep_frames: int, cut: int, which: int) -> None:
        frames = list(VALID[index % len(VALID)])
        if keep_frames < len(frames):
            frames = frames[:keep_frames]
        else:
            target = which % len(frames)
            frames[target] = frames[target][: max(0, len(frames[target]) - cut)]
        result = decode(Session(KEY), frames)
        assert isinstance(result, protocol.ProtocolError) or frames == VALID[index % len(VALID)]

    assert run(prop, st.integers(0, 100), st.integers(0, 12), st.integers(1, 200), st.integers(0, 20)) >= EXAMPLES * 0.9


def test_resigned_content_mutations() -> None:
    """Correctly signed (an insider or a buggy client), but with damaged content: validation must catch it."""

    def prop(index: int, path_seed: int, value: Any, drop: bool) -> None:
        frames = list(VALID[index % len(VALID)])
        content = json.loads(frames[5])
        target: Any = content
        for _ in range(path_seed % 4):  # walk a little into nested objects / arrays
            children = list(target.values()) if isinstance(target, dict) else target if isinstance(target, list) else []
            nested = [c for c in children if isinstance(c, (dict, list)) and c]
            if not nested:
                break
            target = nested[path_seed % len(nested)]
        if isinstance(target, dict) and target:
            key = sorted(target)[path_seed % len(target)]
            if drop:
                del target[key]
            else:
                target[key] = value
        elif isinstance(target, list) and target:
            target[path_seed % len(target)] = value
        frames[5] = json.dumps(content).encode()
        decode(Session(KEY), resign(frames))

    assert run(prop, st.integers(0, 100), st.integers(0, 1000), json_values, st.booleans()) >= EXAMPLES * 0.9


def test_resigned_header_and_buffer_mutations() -> None:
    def prop(index: int, part: int, value: Any, extra_buffers: list[bytes]) -> None:
        frames = list(VALID[index % len(VALID)])
        part = 2 + part % 4
        obj = json.loads(frames[part])
        if obj:
            obj[sorted(obj)[index % len(obj)]] = value
        else:
            obj = value
        frames[part] = json.dumps(obj).encode()
        frames += extra_buffers
        decode(Session(KEY), resign(frames))

    strategies = (st.integers(0, 100), st.integers(0, 3), json_values, st.lists(st.binary(max_size=8), max_size=3))
    assert run(prop, *strategies) >= EXAMPLES * 0.9


def test_replayed_and_wrongly_signed_messages() -> None:
    def prop(index: int, wrong_key: bytes, strip: bool) -> None:
        receiver = Session(KEY)
        frames = VALID[index % len(VALID)]
        assert not isinstance(decode(receiver, frames), protocol.ProtocolError)
        assert isinstance(decode(receiver, frames), protocol.ReplayedMessage)
        forged = resign(list(frames), wrong_key if wrong_key != KEY else b"x" + KEY)
        if strip:
            forged[1] = b""
        assert isinstance(decode(Session(KEY), forged), protocol.BadSignature)

    assert run(prop, st.integers(0, 100), st.binary(min_size=1, max_size=16), st.booleans()) >= EXAMPLES * 0.9


def test_oversized_messages() -> None:
    def prop(frame_limit: int, buffer_sizes: list[int], json_pad: int) -> None:
        limits = Limits(max_frame_bytes=frame_limit, max_message_bytes=4 * frame_limit + 2000, max_json_bytes=1000,
                        max_buffers=4)
        content = m.SceneChunkRequest(upload_id="u", pieces=[m.ChunkPiece(0, 0, n) for n in buffer_sizes])
        message = m.build(SENDER, content, buffers=[bytes(n) for n in buffer_sizes])
        message.metadata["pad"] = "x" * json_pad
        frames = [bytes(f) for f in SENDER.serialize(message)]
        result = decode(Session(KEY, limits=limits), frames)
        too_big = (
            len(buffer_sizes) > 4
            or max(buffer_sizes) > frame_limit
            or any(len(f) > 1000 for f in frames[2:6])
            or sum(len(f) for f in frames[1:]) > limits.max_message_bytes
        )
        assert isinstance(result, protocol.OversizedMessage) == too_big, (result, too_big)
        if not too_big:
            assert isinstance(result, m.SceneChunkRequest)

    sizes = st.lists(st.integers(1, 600), min_size=1, max_size=6)
    assert run(prop, st.integers(64, 512), sizes, st.integers(0, 1200)) >= EXAMPLES * 0.9
