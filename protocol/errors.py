"""Typed protocol errors.

Every failure the decoder or a validator can detect is a subclass of :class:`ProtocolError`. Its ``ename`` is the
stable name that travels in error replies (``content["ename"]``), so the other side can tell a wrong key from a bad
field without parsing prose.
"""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Base class of every error the protocol raises on bad input."""

    ename: ClassVar[str] = "ProtocolError"
    #: set by ``Session.deserialize`` when the message's signature, date and replay checks had passed before this
    #: error was found (its sender holds the key: a server may answer it signed)
    sender_proved_key: bool = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: dotted path of the offending field (``"cameras[3].fl_x"``), when one field is to blame
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class MalformedMessage(ProtocolError):
    """Frames that cannot be parsed: missing delimiter, too few frames, invalid JSON, a header that is not a dict."""

    ename = "MalformedMessage"


class BadSignature(ProtocolError):
    """Missing or wrong HMAC signature (usually: the two sides hold different keys)."""

    ename = "BadSignature"


class ReplayedMessage(ProtocolError):
    """A signature seen before: the exact same message was sent twice."""

    ename = "ReplayedMessage"


class OversizedMessage(ProtocolError):
    """A frame or a whole message above the configured limit."""

    ename = "OversizedMessage"


class VersionMismatch(ProtocolError):
    """The peer speaks an incompatible protocol version (different major)."""

    ename = "VersionMismatch"


class UnknownMessageType(ProtocolError):
    """A ``msg_type`` this side does not know."""

    ename = "UnknownMessageType"


class ValidationError(ProtocolError):
    """Content that parses but is wrong: missing field, wrong type, NaN in a matrix, dtype/shape mismatch..."""

    ename = "ValidationError"


class ConnectionFileError(ProtocolError):
    """A connection file that is missing, unreadable, insecure or incomplete."""

    ename = "ConnectionFileError"


class RequestTimeout(ProtocolError):
    """No reply after every retry (client side): the server is not running, unreachable, or stuck."""

    ename = "RequestTimeout"


class RemoteError(ProtocolError):
    """The server answered ``status: error``. ``remote_ename`` is the server's error name."""

    ename = "RemoteError"

    def __init__(self, remote_ename: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.remote_ename = remote_ename

    def __str__(self) -> str:
        return f"{self.remote_ename}: {super().__str__()}"


#: ename -> class, used to re-raise the right type for errors described in replies
ERRORS_BY_NAME: dict[str, type[ProtocolError]] = {
    cls.ename: cls
    for cls in (
        ProtocolError,
        MalformedMessage,
        BadSignature,
        ReplayedMessage,
        OversizedMessage,
        VersionMismatch,
        UnknownMessageType,
        ValidationError,
        ConnectionFileError,
        RequestTimeout,
    )
}
