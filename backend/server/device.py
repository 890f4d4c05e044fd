"""Which compute device the backend has, found without slowing anything down.

torch takes seconds to import, so it is imported once in a background thread (never on the ping path). Anyone who
needs the answer waits on :meth:`DeviceProbe.when_ready` callbacks instead of blocking the server loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    gpu_name: str | None = None
    gpu_memory_bytes: int | None = None
    status: str = "probing"
    """Human-readable: ``cuda: <name>``, ``cpu only (no CUDA device)``, ``torch unavailable: ...``, ``not probed``."""


def probe_torch() -> DeviceInfo:
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return DeviceInfo(status=f"torch unavailable: {type(exc).__name__}: {exc}"[:300])
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return DeviceInfo(props.name, int(props.total_memory), f"cuda: {props.name}")
        return DeviceInfo(status=f"cpu only (torch {torch.__version__}, no CUDA device)")
    except Exception as exc:
        return DeviceInfo(status=f"cuda probe failed: {type(exc).__name__}: {exc}"[:300])


class DeviceProbe:
    """Runs ``probe`` once in a daemon thread; callbacks registered with :meth:`when_ready` get the result."""

    def __init__(self, probe: Callable[[], DeviceInfo] = probe_torch) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._result: DeviceInfo | None = None
        self._waiters: list[Callable[[DeviceInfo], None]] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="device-probe", daemon=True)
                self._thread.start()

    @property
    def result(self) -> DeviceInfo | None:
        return self._result

    def when_ready(self, callback: Callable[[DeviceInfo], None]) -> None:
        """Call ``callback(info)`` now if known, else from the probe thread when it finishes (starting it if needed)."""
        with self._lock:
            if self._result is None:
                self._waiters.append(callback)
                callback = None  # type: ignore[assignment]
        if callback is not None:
            callback(self._result)  # type: ignore[arg-type]
        else:
            self.start()

    def _run(self) -> None:
        try:
            info = self._probe()
        except Exception as exc:  # a probe must never take the server down
            info = DeviceInfo(status=f"probe failed: {exc}")
        log.info("compute device: %s", info.status)
        with self._lock:
            self._result = info
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter(info)
