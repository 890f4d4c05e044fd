"""Server settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from protocol import Limits


@dataclass
class ServerConfig:
    """How the ZeroMQ server listens and what it tolerates."""

    host: str = "127.0.0.1"
    """Address to bind. Anything but loopback requires a key."""
    port: int = 0
    """0: let the OS pick a free port (the connection file tells clients which)."""
    key: str | None = None
    """HMAC key; None: generate a fresh random one. Empty string: unsigned (loopback only)."""
    limits: Limits = field(default_factory=Limits)
    """Frame / message size limits (oversized frames are dropped by libzmq or answered with OversizedMessage)."""
    max_chunk_bytes: int = 16 * 1024 * 1024
    """Largest upload chunk a client should send (advertised in scene_begin_reply)."""
    reply_cache_size: int = 4096
    """How many recent replies are kept by msg_id, to answer retried requests without running them twice."""
    reply_cache_bytes: int = 256 * 1024 * 1024
    """Cap on the binary buffers held by cached replies (result chunks); the oldest replies are evicted first."""
    heartbeat_interval_s: float = 5.0
    """How often subscribed clients get a ``heartbeat`` event."""
    max_previews_per_client: int = 3
    """2D instruction previews one client may have waiting or running; more are refused until one ends or is
    cancelled (one client queued 300 in 30 ms)."""
    max_previews: int = 12
    """2D instruction previews waiting or running on the server, all clients together."""
    max_outgoing_bytes: int = 64 * 1024 * 1024
    """Events waiting for one client that does not read them; beyond it, progress is merged and previews dropped,
    oldest first (never replies, job states or results). A client that stopped reading held 344 MB of events."""
    probe_device: bool = True
    """Import torch in a background thread at start-up to report the GPU in ``hello_reply`` (never on ping)."""

    def request_limits(self) -> Limits:
        """The decoder's limits for requests: no request carries more than one upload chunk of buffers, so a
        message larger than that plus its JSON parts is refused before its signature is hashed (a peer without the
        key cannot make the server hash or hold 1 GiB messages)."""
        largest = self.max_chunk_bytes + 4 * self.limits.max_json_bytes
        return dataclasses.replace(self.limits, max_message_bytes=min(self.limits.max_message_bytes, largest))
