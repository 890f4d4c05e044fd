"""HMAC-SHA256 signing of messages and a bounded cache of seen signatures (replay protection).

Unlike Jupyter, the binary buffers are signed too (they are the images the backend trains on), and each part's length
is mixed into the digest so bytes cannot be moved across a frame boundary without breaking the signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable

from .errors import BadSignature, ReplayedMessage

SIGNATURE_SCHEME = "hmac-sha256"

BufferLike = bytes | bytearray | memoryview


class Signer:
    """Signs and verifies the signed parts of a message: header, parent_header, metadata, content, *buffers."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError("key must be bytes")
        self._key = key

    @property
    def enabled(self) -> bool:
        """An empty key disables signing; only allowed on loopback (see ``connection.check_bind``)."""
        return bool(self._key)

    def sign(self, parts: Iterable[BufferLike]) -> bytes:
        if not self._key:
            return b""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            view = memoryview(part)
            mac.update(view.nbytes.to_bytes(8, "big"))
            mac.update(view)
        return mac.hexdigest().encode("ascii")

    def routing_id(self, session_id: str) -> bytes:
        """The ZeroMQ routing id of ``session_id``'s socket: a MAC of it under the key, so that a peer without the
        key cannot compute it (and take a client's events over by connecting with its routing id, which a ROUTER
        with handover hands to the newest connection); the session id itself when messages are unsigned."""
        if not self._key:
            return session_id.encode("utf-8")
        mac = hmac.new(self._key, b"in2n routing id\0" + session_id.encode("utf-8"), digestmod=hashlib.sha256)
        return b"r-" + mac.hexdigest()[:32].encode("ascii")

    def verify(self, signature: bytes, parts: Iterable[BufferLike]) -> None:
        """Raise :class:`BadSignature` unless ``signature`` matches ``parts``."""
        if not self._key:
            return
        if not signature:
            raise BadSignature("message is not signed but this side requires a signature", field="signature")
        expected = self.sign(parts)
        if not hmac.compare_digest(expected, signature):
            raise BadSignature("signature does not match (do both sides use the same key?)", field="signature")


class ReplayCache:
    """Signatures seen in the last ``window_s`` seconds; a repeated one means a replayed (or duplicated) message.

    Sized by time, not count: the decoder refuses signed messages dated outside its replay window, so a signature
    only needs remembering for that long. Only messages whose signature verified are added, so a peer without the
    key cannot grow it."""

    def __init__(self, window_s: float = 600.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.window_s = window_s
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, signature: object) -> bool:
        return signature in self._seen

    def check_and_add(self, signature: bytes, now: float) -> None:
        """Raise :class:`ReplayedMessage` if ``signature`` was seen within the window, else remember it at ``now``
        (a monotonic time) and forget the ones older than the window."""
        if not signature:
            return  # unsigned (keyless loopback) sessions have nothing to remember
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if now - seen_at <= self.window_s:
                break
            del self._seen[oldest]
        if signature in self._seen:
            raise ReplayedMessage("this exact message was already received (replay)", field="signature")
        self._seen[signature] = now
