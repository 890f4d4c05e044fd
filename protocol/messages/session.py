"""Session-level messages: version negotiation, liveness, shutdown, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..schema import bounded, limit
from .registry import message


@message("hello_request", "request")
@dataclass(frozen=True)
class HelloRequest:
    """First message of a client: which protocol versions it speaks. The header version is not checked for hello."""

    protocol_versions: list[str] = field(metadata=limit(min_len=1, max_len=16))
    """Versions the client speaks, e.g. ``["2.0"]``; the server picks one with a matching major."""
    client_name: str = bounded("", max_len=200)
    """Free text shown in the server log, e.g. ``"in2n-blender add-on 0.1 / Blender 4.2"``."""


@dataclass(frozen=True)
class ServerLimits:
    max_frame_bytes: int = field(metadata=limit(ge=1))
    """Largest buffer the server accepts in one frame: clients chunk uploads below this."""
    max_message_bytes: int = field(metadata=limit(ge=1))
    """Largest total message."""
    max_previews_per_client: int | None = None
    """2D instruction previews one client may have waiting or running (protocol 2.3)."""
    max_previews: int | None = None
    """... and all clients together (protocol 2.3)."""
    max_outgoing_bytes: int | None = None
    """Events the server keeps waiting for a client that does not read them; beyond it, progress is merged and
    previews dropped, oldest first (protocol 2.4)."""


@message("hello_reply", "reply")
@dataclass(frozen=True)
class HelloReply:
    protocol_version: str
    """The version the server will speak (same major as one the client offered)."""
    server_name: str
    server_version: str
    """Package version of the backend (not the protocol version)."""
    python_version: str
    pid: int
    limits: ServerLimits
    heartbeat_interval_s: float = bounded(5.0, gt=0)
    """The server pushes a ``heartbeat`` event this often to subscribed clients."""
    gpu_name: str | None = None
    """CUDA device name, or null when there is none (or torch is not importable)."""
    gpu_memory_bytes: int | None = None
    device_status: str = ""
    memory_bytes: int | None = None
    """The server machine's RAM (protocol 2.0)."""
    cpu_count: int | None = None
    """Human-readable compute status, e.g. ``"cuda: NVIDIA H100"``, ``"cpu only"``, ``"probing"``."""
    capabilities: list[str] = field(default_factory=list)
    """Message types the server handles beyond hello/ping/shutdown (lets a client degrade gracefully)."""


@message("ping_request", "request")
@dataclass(frozen=True)
class PingRequest:
    payload: str = bounded("", max_len=1024)
    """Echoed back unchanged."""


@message("ping_reply", "reply")
@dataclass(frozen=True)
class PingReply:
    payload: str = ""
    server_time: str = ""
    """ISO-8601 UTC time on the server."""
    uptime_s: float = 0.0


@message("shutdown_request", "request")
@dataclass(frozen=True)
class ShutdownRequest:
    reason: str = bounded("", max_len=1000)
    """Logged by the server. Shutdown cancels running jobs and is never queued behind one."""


@message("shutdown_reply", "reply")
@dataclass(frozen=True)
class ShutdownReply:
    accepted: bool = True


@message("heartbeat", "event")
@dataclass(frozen=True)
class Heartbeat:
    """Pushed by the server to subscribed clients every ``interval_s`` seconds."""

    server_time: str
    interval_s: float = field(metadata=limit(gt=0))
    jobs_running: int = bounded(0, ge=0)
    jobs_queued: int = bounded(0, ge=0)
    dropped_events: int = bounded(0, ge=0)
    """Progress and preview events merged or dropped so far because this client read too slowly (protocol 2.4):
    when it grows, list the jobs to catch up."""


@message("error_reply", "reply")
@dataclass(frozen=True)
class ErrorReply:
    """Reply to a request that failed; any ``*_reply`` with ``status: error`` has this content."""

    ename: str
    """Stable error name (a :mod:`protocol.errors` class name, or a server-side one such as ``JobNotFound``)."""
    evalue: str
    """Human-readable message."""
    field: str | None = None
    """Dotted path of the offending field, when one field is to blame."""
    details: dict[str, Any] = bounded({})
