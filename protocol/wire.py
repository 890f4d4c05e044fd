"""Wire format: framing, signing, decoding (after Jupyter's wire protocol).

A message on the socket is the multipart sequence::

    [routing ids..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, *buffers]

``header``, ``parent_header``, ``metadata`` and ``content`` are UTF-8 JSON objects; ``buffers`` are raw bytes (image
pixels, file chunks) described by fields in ``content``. :class:`Session` turns :class:`Message` objects into frames and
back, enforcing size limits, the signature, the replay cache and the protocol version. Content-level validation (which
fields a ``msg_type`` needs) lives in :mod:`protocol.messages`.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import zmq

from .errors import MalformedMessage, OversizedMessage, ProtocolError, ReplayedMessage, ValidationError
from .signing import BufferLike, ReplayCache, Signer
from .version import PROTOCOL_VERSION, check_compatible

DELIMITER = b"<IDS|MSG>"
HEADER_FIELDS = ("msg_id", "session", "msg_type", "protocol_version", "date")
#: message types whose header version is not checked by the decoder: version negotiation happens in their content
VERSION_EXEMPT_TYPES = frozenset({"hello_request", "hello_reply"})
MIB = 1024 * 1024

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """Size limits the decoder enforces; anything above is an :class:`OversizedMessage`."""

    max_frame_bytes: int = 256 * MIB
    """Largest single frame (one image chunk). Servers also set ZMQ_MAXMSGSIZE to this so oversized frames are
    dropped by libzmq before they are allocated."""
    max_message_bytes: int = 1024 * MIB
    """Largest sum of all frames of one message."""
    max_json_bytes: int = 16 * MIB
    """Largest metadata / content frame."""
    max_header_bytes: int = 8 * 1024
    """Largest header / parent_header frame (five short strings; peers may add a few fields of their own)."""
    max_buffers: int = 4096
    """Most binary buffers in one message."""
    max_routing_ids: int = 16
    """Most routing-id frames before the delimiter."""


@dataclass
class Message:
    """One decoded (or to-be-sent) message. ``content`` is the raw JSON dict; see :mod:`protocol.messages`."""

    header: JsonDict
    content: JsonDict = field(default_factory=dict)
    parent_header: JsonDict = field(default_factory=dict)
    metadata: JsonDict = field(default_factory=dict)
    buffers: list[BufferLike] = field(default_factory=list)
    #: ROUTER routing ids the message came from / goes to (empty on the DEALER side)
    idents: list[bytes] = field(default_factory=list)

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def new_id() -> str:
    return uuid.uuid4().hex


def _dumps(obj: JsonDict, part: str) -> bytes:
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except ValueError as exc:  # NaN / inf: JSON has no spelling for them and the peer would reject them
        raise ValidationError(f"cannot encode: {exc}", field=part) from exc
    except TypeError as exc:
        raise ValidationError(f"cannot encode: {exc}", field=part) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in protocol JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf: JSON cannot carry it back, so it is not accepted either
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def encodable(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (``json.loads`` accepts lone UTF-16 surrogates, which cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value: Any, part: str) -> None:
    """Every string (keys included) must be encodable as UTF-8: ``json.loads`` accepts lone UTF-16 surrogates such
    as ``"\\ud800"``, which could then never be encoded again (a reply echoing them, a stored record)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not encodable(item):
                raise MalformedMessage("text with a lone UTF-16 surrogate (not valid Unicode)", field=part)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _loads(data: bytes, part: str) -> JsonDict:
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, NaN/inf, huge ints, absurd nesting
        raise MalformedMessage(f"not valid JSON: {str(exc)[:200]}", field=part) from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"must be a JSON object, got {type(value).__name__}", field=part)
    _check_text(value, part)
    return value


def _as_bytes(frame: BufferLike | zmq.Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    return bytes(frame)


def _as_view(frame: BufferLike | zmq.Frame) -> BufferLike:
    if isinstance(frame, zmq.Frame):
        return frame.buffer  # zero-copy view of the received frame
    return frame


def _nbytes(frame: BufferLike | zmq.Frame) -> int:
    if isinstance(frame, zmq.Frame):
        return len(frame)
    return memoryview(frame).nbytes


class Session:
    """Builds, signs, sends, receives and checks messages for one peer identity.

    Holds the signing key, the replay cache and the limits; safe to use from one thread at a time.
    """

    def __init__(
        self,
        key: bytes,
        *,
        session_id: str | None = None,
        limits: Limits | None = None,
        replay_window_s: float = 300.0,
        not_before: float | None = None,
    ) -> None:
        """``replay_window_s``: signed messages dated further than this from now (either way) are refused, and the
        replay cache remembers signatures for that long. ``not_before``: a server passes its start time, so that
        messages captured before it started are refused even with a fixed key (they are dated earlier)."""
        self.session_id = session_id or new_id()
        self.signer = Signer(key)
        self.limits = limits or Limits()
        self.replay_window_s = replay_window_s
        self.not_before = not_before
        self.replay_cache = ReplayCache(2 * replay_window_s)

    @property
    def routing_id(self) -> bytes:
        """This session's socket routing id (see :meth:`Signer.routing_id`)."""
        return self.signer.routing_id(self.session_id)

    # ------------------------------------------------------------------ building
    def header(self, msg_type: str, *, msg_id: str | None = None) -> JsonDict:
        return {
            "msg_id": msg_id or new_id(),
            "session": self.session_id,
            "msg_type": msg_type,
            "protocol_version": PROTOCOL_VERSION,
            "date": utc_now(),
        }

    def msg(
        self,
        msg_type: str,
        content: JsonDict | None = None,
        *,
        parent: Message | None = None,
        buffers: Sequence[BufferLike] = (),
        metadata: JsonDict | None = None,
        msg_id: str | None = None,
    ) -> Message:
        return Message(
            header=self.header(msg_type, msg_id=msg_id),
            content=dict(content or {}),
            # only the standard fields: a reply (and the reply cache) never carries extra bytes a peer put there
            parent_header={k: parent.header[k] for k in HEADER_FIELDS if k in parent.header} if parent else {},
            metadata=dict(metadata or {}),
            buffers=list(buffers),
            idents=list(parent.idents) if parent is not None else [],
        )

    # ------------------------------------------------------------------ encoding
    def serialize(self, message: Message, *, signed: bool = True) -> list[BufferLike]:
        """Frames ready for ``send_multipart(copy=False)``; buffers are passed through without copying.

        ``signed=False``: an empty signature, for error replies to peers that did not prove the key (they get no
        material signed with it)."""
        parts: list[BufferLike] = [
            _dumps(message.header, "header"),
            _dumps(message.parent_header, "parent_header"),
            _dumps(message.metadata, "metadata"),
            _dumps(message.content, "content"),
            *message.buffers,
        ]
        signature = self.signer.sign(parts) if signed else b""
        return [*message.idents, DELIMITER, signature, *parts]

    def send(self, socket: zmq.Socket[Any], message: Message) -> None:
        socket.send_multipart(self.serialize(message), copy=False)

    # ------------------------------------------------------------------ decoding
    def split_idents(self, frames: Sequence[BufferLike | zmq.Frame]) -> tuple[list[bytes], int]:
        """Routing ids before the delimiter and the delimiter's index."""
        limit = min(len(frames), self.limits.max_routing_ids + 1)
        for index in range(limit):
            if _nbytes(frames[index]) == len(DELIMITER) and _as_bytes(frames[index]) == DELIMITER:
                return [_as_bytes(f) for f in frames[:index]], index
        raise MalformedMessage("no '<IDS|MSG>' delimiter among the first frames", field="frames")

    def deserialize(self, frames: Sequence[BufferLike | zmq.Frame]) -> Message:
        """Check and decode one received multipart message; raise a :class:`ProtocolError` subclass if it is bad."""
        idents, signature, parts = self._checked_parts(frames)
        self.signer.verify(signature, parts)

        header = _loads(_as_bytes(parts[0]), "header")
        check_header(header)
        if self.signer.enabled:
            self._check_fresh(header["date"])
            self.replay_cache.check_and_add(signature, time.monotonic())
        try:
            message = self._message(header, parts, idents)
            if header["msg_type"] not in VERSION_EXEMPT_TYPES:
                check_compatible(header["protocol_version"])
        except ProtocolError as error:
            error.sender_proved_key = True
            raise
        return message

    def read_unsigned_error(self, frames: Sequence[BufferLike | zmq.Frame]) -> Message | None:
        """An unsigned error reply (a server's answer to a message it could not verify: see ``serialize``), decoded
        without trusting it; None for anything else. A client only ever raises what it says, never acts on it."""
        try:
            idents, signature, parts = self._checked_parts(frames)
            if signature:
                return None
            header = _loads(_as_bytes(parts[0]), "header")
            check_header(header)
            message = self._message(header, parts, idents)
        except ProtocolError:
            return None
        return message if message.content.get("status") == "error" else None

    def _message(self, header: JsonDict, parts: list[BufferLike], idents: list[bytes]) -> Message:
        return Message(
            header=header,
            parent_header=_loads(_as_bytes(parts[1]), "parent_header"),
            metadata=_loads(_as_bytes(parts[2]), "metadata"),
            content=_loads(_as_bytes(parts[3]), "content"),
            buffers=parts[4:],
            idents=idents,
        )

    def _checked_parts(self, frames: Sequence[BufferLike | zmq.Frame]) -> tuple[list[bytes], bytes, list[BufferLike]]:
        """Routing ids, signature and parts of a message within the limits (checked before anything is hashed)."""
        idents, delim = self.split_idents(frames)
        body = frames[delim + 1 :]
        if len(body) < 5:
            raise MalformedMessage(
                f"expected signature + 4 JSON frames after the delimiter, got {len(body)} frames", field="frames"
            )
        limits = self.limits
        if len(body) - 5 > limits.max_buffers:
            raise OversizedMessage(f"{len(body) - 5} buffers, limit {limits.max_buffers}", field="buffers")
        total = 0
        for index, frame in enumerate(body):
            size = _nbytes(frame)
            total += size
            name = _PART_NAMES[index] if index < 5 else f"buffers[{index - 5}]"
            cap = (limits.max_header_bytes if index in (1, 2) else limits.max_json_bytes if index < 5
                   else limits.max_frame_bytes)
            if index == 0:
                cap = 1024  # a hex digest is 64 bytes
            if size > cap:
                raise OversizedMessage(f"{size} bytes, limit {cap}", field=name)
        if total > limits.max_message_bytes:
            raise OversizedMessage(f"message of {total} bytes, limit {limits.max_message_bytes}", field="frames")

        return idents, _as_bytes(body[0]), [_as_view(f) for f in body[1:]]

    def _check_fresh(self, date: str) -> None:
        """A signed message is fresh when its date lies within the replay window of now (and not before the server
        started): older captures cannot be replayed, not even after the replay cache forgot them."""
        try:
            sent = datetime.fromisoformat(date.replace("Z", "+00:00"))
            if sent.tzinfo is None:
                raise ValueError("no time zone")
        except ValueError:
            raise MalformedMessage("must be an ISO-8601 date with a time zone", field="header.date") from None
        sent_s = sent.timestamp()
        now = time.time()
        if abs(now - sent_s) > self.replay_window_s:
            raise ReplayedMessage(f"message dated {date} is more than {self.replay_window_s:.0f} s from this side's "
                                  "clock (a replay, or clocks out of step)", field="header.date")
        if self.not_before is not None and sent_s < self.not_before:
            raise ReplayedMessage(f"message dated {date}, before this server started (a replay)",
                                  field="header.date")

    def recv(self, socket: zmq.Socket[Any], flags: int = 0) -> Message:
        frames = socket.recv_multipart(flags, copy=False)
        return self.deserialize(frames)


_PART_NAMES = ("signature", "header", "parent_header", "metadata", "content")


def check_header(header: JsonDict, part: str = "header") -> None:
    """Every header field present and a short string (msg_id, session and msg_type are also non-empty)."""
    for name in HEADER_FIELDS:
        value = header.get(name)
        if not isinstance(value, str):
            what = "missing" if value is None else f"must be a string, got {type(value).__name__}"
            raise MalformedMessage(what, field=f"{part}.{name}")
        if len(value) > 256:
            raise MalformedMessage("longer than 256 characters", field=f"{part}.{name}")
        if not value and name in ("msg_id", "session", "msg_type"):
            raise MalformedMessage("must not be empty", field=f"{part}.{name}")
