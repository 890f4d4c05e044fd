"""Handlers every server has: hello (version negotiation + server info), ping, shutdown."""

from __future__ import annotations

import logging
import os
import platform
import time
from datetime import UTC, datetime

from protocol import messages as m
from protocol import negotiate

from .core import Request, Server
from .device import DeviceInfo, DeviceProbe

log = logging.getLogger(__name__)

SERVER_NAME = "in2n-blender backend"
SERVER_VERSION = "0.1.0"


def physical_memory() -> int | None:
    """The machine's RAM in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def register_basic_handlers(server: Server, probe: DeviceProbe | None = None) -> DeviceProbe:
    """Register hello / ping / shutdown on ``server``; returns the device probe hello uses."""
    probe = probe or DeviceProbe()
    if server.config.probe_device:
        probe.start()

    def hello(request: Request) -> None:
        assert isinstance(request.content, m.HelloRequest)
        version = negotiate(request.content.protocol_versions)
        log.info("hello from %s (session %s)", request.content.client_name or "?", request.message.header.get("session"))

        def answer(device: DeviceInfo) -> None:
            request.reply(
                m.HelloReply(
                    protocol_version=version,
                    server_name=SERVER_NAME,
                    server_version=SERVER_VERSION,
                    python_version=platform.python_version(),
                    pid=os.getpid(),
                    limits=m.ServerLimits(
                        max_frame_bytes=server.config.limits.max_frame_bytes,
                        max_message_bytes=server.config.limits.max_message_bytes,
                        max_previews_per_client=server.config.max_previews_per_client,
                        max_previews=server.config.max_previews,
                        max_outgoing_bytes=server.config.max_outgoing_bytes,
                    ),
                    heartbeat_interval_s=server.config.heartbeat_interval_s,
                    gpu_name=device.gpu_name,
                    gpu_memory_bytes=device.gpu_memory_bytes,
                    device_status=device.status,
                    memory_bytes=physical_memory(),
                    cpu_count=os.cpu_count(),
                    capabilities=sorted(server.handlers),
                )
            )

        if server.config.probe_device:
            probe.when_ready(answer)  # replies from the probe thread once torch is imported (seconds, only once)
        else:
            answer(DeviceInfo(status="not probed"))

    def ping(request: Request) -> m.PingReply:
        assert isinstance(request.content, m.PingRequest)
        now = datetime.now(UTC).isoformat()
        return m.PingReply(payload=request.content.payload, server_time=now, uptime_s=time.monotonic() - server.started)

    def shutdown(request: Request) -> m.ShutdownReply:
        assert isinstance(request.content, m.ShutdownRequest)
        log.info("shutdown requested: %s", request.content.reason or "(no reason given)")
        server.stop()  # the loop sends this reply before it closes
        return m.ShutdownReply(accepted=True)

    server.register("hello_request", hello)
    server.register("ping_request", ping)
    server.register("shutdown_request", shutdown)
    return probe
