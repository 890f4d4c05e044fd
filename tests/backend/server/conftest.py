from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from backend.server import Server, ServerConfig, register_basic_handlers
from backend.server.device import DeviceProbe


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    """Start a real server core (ROUTER on 127.0.0.1, OS-chosen port) in a thread; stopped after the test."""
    servers: list[Server] = []

    def make(probe: DeviceProbe | None = None, **config: object) -> Server:
        config.setdefault("probe_device", probe is not None)
        server = Server(ServerConfig(**config))  # type: ignore[arg-type]
        register_basic_handlers(server, probe)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        assert server.stopped.wait(10), "server loop did not stop"
