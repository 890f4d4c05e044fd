"""Starting a backend server on this machine: ``<python> -m backend serve --connection-file F``.

The configured interpreter (add-on preferences) must be able to import the ``backend`` package: either it is
installed there, or ``backend_root`` (a checkout of the repository) is put on ``PYTHONPATH`` and used as the working
directory. The server outlives Blender on purpose: jobs keep running and a later session reconnects to them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


class BackendStartError(RuntimeError):
    """The backend could not be started; the message says why (and quotes its log)."""


@dataclass(frozen=True)
class LocalBackendConfig:
    python: str
    """Interpreter of the backend environment (torch, nerfstudio, diffusers)."""
    connection_file: Path
    """Where the server writes host, port and key."""
    log_file: Path
    """The server's stdout and stderr (the add-on shows its tail when the start fails)."""
    backend_root: str = ""
    """Folder holding the ``backend`` and ``protocol`` packages, when they are not installed in ``python``."""
    extra_args: list[str] = field(default_factory=list)
    """More ``serve`` arguments (e.g. ``--no-device-probe``)."""


def command_line(config: LocalBackendConfig) -> list[str]:
    return [config.python, "-m", "backend", "serve", "--connection-file", str(config.connection_file), *config.extra_args]


def start_local_backend(config: LocalBackendConfig) -> subprocess.Popen[bytes]:
    """Spawn the server; it writes ``config.connection_file`` once it listens (read it with a ``Connect``)."""
    if not config.python:
        raise BackendStartError("no backend Python configured: set it in the add-on preferences")
    if not Path(config.python).is_file():
        raise BackendStartError(f"backend Python {config.python!r} does not exist (add-on preferences)")
    if config.backend_root and not (Path(config.backend_root) / "backend").is_dir():
        raise BackendStartError(f"backend folder {config.backend_root!r} has no 'backend' package (add-on preferences)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}  # Blender's Python paths
    if config.backend_root:
        env["PYTHONPATH"] = config.backend_root
    config.connection_file.unlink(missing_ok=True)  # a stale file from an earlier run must not be mistaken for this one
    config.log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(config.log_file, "ab") as log:
        options: dict[str, object] = {}
        if sys.platform == "win32":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            options["start_new_session"] = True  # Ctrl+C in Blender's terminal must not kill the server
        try:
            return subprocess.Popen(command_line(config), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=config.backend_root or None, env=env, **options)  # type: ignore[call-overload]
        except OSError as exc:
            raise BackendStartError(f"cannot run {config.python}: {exc}") from None


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
