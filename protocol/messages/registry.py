"""Registry of message types: which content schema, which direction, which reply, how many buffers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..errors import UnknownMessageType, ValidationError
from ..signing import BufferLike

Kind = Literal["request", "reply", "event"]
C = TypeVar("C")


@dataclass(frozen=True)
class MessageSpec:
    msg_type: str
    content: type
    kind: Kind
    reply_type: str | None
    """For requests: the ``msg_type`` of the reply (``x_request`` -> ``x_reply``)."""


REGISTRY: dict[str, MessageSpec] = {}


def message(msg_type: str, kind: Kind) -> Callable[[type[C]], type[C]]:
    """Class decorator: register a content schema under ``msg_type`` and give it a ``MSG_TYPE`` attribute."""

    def wrap(cls: type[C]) -> type[C]:
        if msg_type in REGISTRY:
            raise RuntimeError(f"message type {msg_type} registered twice")
        reply = msg_type[: -len("_request")] + "_reply" if kind == "request" else None
        REGISTRY[msg_type] = MessageSpec(msg_type, cls, kind, reply)
        setattr(cls, "MSG_TYPE", msg_type)  # noqa: B010 (a class attribute the type of C does not declare)
        return cls

    return wrap


def spec_for(msg_type: str) -> MessageSpec:
    spec = REGISTRY.get(msg_type)
    if spec is None:
        raise UnknownMessageType(f"unknown message type {msg_type[:80]!r}", field="header.msg_type")
    return spec


def msg_type_of(content: Any) -> str:
    msg_type = getattr(type(content), "MSG_TYPE", None)
    if not isinstance(msg_type, str):
        raise TypeError(f"{type(content).__name__} is not a registered message content")
    return msg_type


def reply_type_for(msg_type: str) -> str:
    """Reply type of a request; ``error_reply`` for anything that is not a known request."""
    spec = REGISTRY.get(msg_type)
    if spec is None or spec.reply_type is None:
        return "error_reply"
    return spec.reply_type


def expect_buffers(buffers: Sequence[BufferLike], sizes: Sequence[int], what: str = "buffers") -> None:
    """Exactly ``len(sizes)`` buffers with those byte sizes (a size of -1 accepts any size)."""
    if len(buffers) != len(sizes):
        raise ValidationError(f"expected {len(sizes)} binary buffers, got {len(buffers)}", field=what)
    for index, (buffer, size) in enumerate(zip(buffers, sizes)):
        nbytes = memoryview(buffer).nbytes
        if size >= 0 and nbytes != size:
            raise ValidationError(f"has {nbytes} bytes, content describes {size}", field=f"{what}[{index}]")
