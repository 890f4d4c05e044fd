"""Connection files: how a client finds and authenticates to a server (like Jupyter's kernel-*.json).

The server writes ``{"transport", "host", "port", "key", "signature_scheme", "protocol_version", "pid"}`` atomically
with mode 0600 (owner only: the key is a secret); the client reads it. Loopback is the default bind; binding anything
else requires a key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConnectionFileError
from .files import atomic_write
from .signing import SIGNATURE_SCHEME
from .version import PROTOCOL_VERSION

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def new_key() -> str:
    """A fresh random signing key (256 bits, hex)."""
    return secrets.token_hex(32)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str) -> None:
    """Refuse to listen beyond this machine without a signing key (anyone could run jobs or read results)."""
    if not key and not is_loopback(host):
        raise ConnectionFileError(
            f"binding {host} (not loopback) requires a key: pass --key or let the server generate one", field="key"
        )


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a server listens and the key that signs its messages."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 before binding (the server picks a free port); the real port once written to a file."""
    key: str = field(default_factory=new_key, repr=False)
    """Shared HMAC key (hex text, used as its UTF-8 bytes); empty disables signing (loopback only)."""
    transport: str = "tcp"
    signature_scheme: str = SIGNATURE_SCHEME
    protocol_version: str = PROTOCOL_VERSION
    pid: int | None = None
    """Process id of the server (lets a client tell whether it is still alive)."""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode("utf-8")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "connection info") -> ConnectionInfo:
        if not isinstance(data, dict):
            raise ConnectionFileError(f"{source}: must be a JSON object")
        for name in ("host", "port", "key"):
            if name not in data:
                raise ConnectionFileError(f"{source}: missing field", field=name)
        if not isinstance(data["host"], str) or not data["host"]:
            raise ConnectionFileError(f"{source}: must be a non-empty string", field="host")
        port = data["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConnectionFileError(f"{source}: must be an integer 1..65535, got {port!r}", field="port")
        if not isinstance(data["key"], str):
            raise ConnectionFileError(f"{source}: must be a string", field="key")
        transport = data.get("transport", "tcp")
        if transport != "tcp":
            raise ConnectionFileError(f"{source}: only 'tcp' is supported, got {transport!r}", field="transport")
        scheme = data.get("signature_scheme", SIGNATURE_SCHEME)
        if scheme != SIGNATURE_SCHEME:
            raise ConnectionFileError(
                f"{source}: only {SIGNATURE_SCHEME!r} is supported, got {scheme!r}", field="signature_scheme"
            )
        pid = data.get("pid")
        return cls(
            host=data["host"],
            port=port,
            key=data["key"],
            transport=transport,
            signature_scheme=scheme,
            protocol_version=str(data.get("protocol_version", PROTOCOL_VERSION)),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        )


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) as a directory only its owner can enter (0700); refuse an existing one that
    another user owns (it could have been planted in a shared folder such as /tmp) and tighten one of ours."""
    folder = Path(path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if not stat.S_ISDIR(status.st_mode):
        raise ConnectionFileError(f"{folder} is not a directory (a link or file is in its place)", field="path")
    if hasattr(os, "getuid") and status.st_uid != os.getuid():
        raise ConnectionFileError(f"{folder} belongs to another user (uid {status.st_uid}); refusing to use it",
                                  field="path")
    if status.st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def write_connection_file(path: str | os.PathLike[str], info: ConnectionInfo) -> Path:
    """Write ``info`` atomically with mode 0600: a reader never sees a half-written file or a readable key."""
    return atomic_write(path, json.dumps(info.to_json(), indent=2).encode("utf-8"), mode=0o600)


def read_connection_file(path: str | os.PathLike[str], *, require_private: bool = True) -> ConnectionInfo:
    """Read a connection file; refuse one that others can read when ``require_private`` (POSIX only)."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        raise ConnectionFileError(f"{target}: no such connection file (is the backend running?)") from None
    except OSError as exc:
        raise ConnectionFileError(f"{target}: cannot read: {exc}") from None
    if require_private and os.name == "posix" and mode & 0o077:
        raise ConnectionFileError(f"{target}: mode {mode:o} lets others read the key; expected 600")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConnectionFileError(f"{target}: not valid JSON ({exc})") from None
    return ConnectionInfo.from_json(data, source=str(target))
