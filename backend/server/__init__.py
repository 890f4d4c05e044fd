"""The backend's ZeroMQ server: a ROUTER loop with a handler registry (:mod:`.core`), the basic handlers
(:mod:`.basic`: hello, ping, shutdown) and the command line (:mod:`.cli`). Jobs register more handlers on the same
:class:`Server`. Importing this package never imports torch."""

from __future__ import annotations

from .basic import SERVER_VERSION, register_basic_handlers
from .config import ServerConfig
from .core import ALL, Request, Server

__all__ = ["ALL", "SERVER_VERSION", "Request", "Server", "ServerConfig", "register_basic_handlers"]
