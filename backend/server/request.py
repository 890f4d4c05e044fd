"""A request being handled: who sent it (where its events go) and how it is answered, from any thread."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import Message, ProtocolError, Session
from protocol import messages as m
from protocol.signing import BufferLike
from protocol.version import VersionMismatch, parse_version

log = logging.getLogger(__name__)


class ReceivingServer(Protocol):
    """What a request uses of the server that received it (:class:`backend.server.core.Server`)."""

    session: Session

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the server loop (from any thread)."""

    def send_reply(self, request: Message, reply: Message) -> None:
        """Answer ``request`` (server loop only)."""


@dataclass
class Request:
    """A decoded, validated request being handled."""

    server: ReceivingServer
    message: Message
    content: Any
    _answered: bool = field(default=False, repr=False)

    @property
    def identity(self) -> bytes:
        """Where this client's events go: the sender's routing id when it is the one its session derives from the key
        (protocol 2.3; before it, the session id itself), else b"" (no events: a peer cannot take another client's
        events over by connecting with that client's routing id)."""
        sender = self.message.idents[0] if self.message.idents else b""
        session = str(self.message.header.get("session", ""))
        expected = self.server.session.signer.routing_id(session)
        if sender == expected or (sender == session.encode("utf-8") and _before_derived_routing_ids(self.message)):
            return sender
        return b""

    def reply(self, content: Any, buffers: Sequence[BufferLike] = ()) -> None:
        """Send the reply (any thread). Only the first reply counts."""
        if self._answered:
            return
        self._answered = True

        def send() -> None:
            try:
                reply = m.build(self.server.session, content, parent=self.message, buffers=buffers)
            except Exception as exc:  # a reply that cannot be encoded (a handler bug) still answers the client
                log.exception("reply to %s could not be built", self.message.msg_type)
                reply = m.build_error(self.server.session, self.message,
                                      InternalError(f"the server could not encode its reply ({exc})"))
            self.server.send_reply(self.message, reply)

        self.server.call_soon(send)

    def fail(self, error: Exception) -> None:
        """Send an error reply (any thread); a ProtocolError keeps its name and field."""
        if self._answered:
            return
        self._answered = True
        self.server.call_soon(lambda: self.server.send_reply(
            self.message, m.build_error(self.server.session, self.message, error)))


class InternalError(ProtocolError):
    """The server failed while handling a message (its log has the traceback)."""

    ename = "InternalError"


def _before_derived_routing_ids(message: Message) -> bool:
    """Sent by a client older than protocol 2.3, whose routing id is its session id."""
    try:
        return parse_version(message.header.get("protocol_version")) < (2, 3)
    except VersionMismatch:
        return False
