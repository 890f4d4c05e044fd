"""Turn exceptions into one clear sentence for a Blender report (never only a traceback in the console)."""

from __future__ import annotations

import logging

from .local_backend import BackendStartError
from .protocol_link import protocol

log = logging.getLogger(__name__)


def describe(exc: BaseException, *, action: str = "", url: str = "") -> str:
    """``"<action> failed: <what happened and what to do>"``."""
    where = f" at {url}" if url else ""
    if isinstance(exc, protocol.RequestTimeout):
        text = (f"no answer from the backend{where}. Is it running? Use 'Start local backend' or check the "
                "connection file / address")
    elif isinstance(exc, protocol.BadSignature):
        text = (f"the backend{where} rejected our messages or signed its replies with a different key: the key does "
                "not match (stale or wrong connection file?)")
    elif isinstance(exc, protocol.VersionMismatch):
        text = (f"protocol version mismatch: this add-on speaks {protocol.PROTOCOL_VERSION}, the backend does not "
                f"({exc.message}). Install matching versions of the add-on and the backend")
    elif isinstance(exc, protocol.ConnectionFileError):
        text = exc.message if not exc.field else f"{exc.message} (field '{exc.field}')"
    elif isinstance(exc, protocol.ValidationError):
        text = f"invalid value for '{exc.field}': {exc.message}" if exc.field else exc.message
    elif isinstance(exc, protocol.RemoteError):
        text = f"backend error {exc.remote_ename}: {exc.message}"
    elif isinstance(exc, protocol.ProtocolError):
        text = f"{exc.ename}: {exc}"
    elif isinstance(exc, BackendStartError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        log.error("unexpected error during %s", action or "a backend call", exc_info=exc)
        text = f"unexpected {type(exc).__name__}: {exc} (details in the system console)"
    return f"{action} failed: {text}" if action else text
