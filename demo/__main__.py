"""``python -m demo``: start the backend server, talk to it through the protocol client, shut it down.

The backend runs in its own interpreter (``$IN2N_BACKEND_PYTHON``, the backend environment; fallback: this one), as it
does for the Blender add-on. A later stage extends this into the full end-to-end edit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protocol import Client, ProtocolError, read_connection_file

ROOT = Path(__file__).resolve().parent.parent


def start_backend(connection_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    python = os.environ.get("IN2N_BACKEND_PYTHON") or sys.executable
    command = [python, "-m", "backend", "serve", "--connection-file", str(connection_file), "--log-file", str(log_file)]
    return subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"backend exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"backend did not write {path} within {timeout_s:.0f} s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the backend to start")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="in2n-demo-") as tmp:
        connection_file, log_file = Path(tmp) / "connection.json", Path(tmp) / "backend.log"
        print(f"[demo] starting backend ({os.environ.get('IN2N_BACKEND_PYTHON') or sys.executable})", flush=True)
        backend = start_backend(connection_file, log_file)
        try:
            wait_for_file(connection_file, backend, args.timeout)
            info = read_connection_file(connection_file)
            with Client(info, timeout_s=args.timeout, retries=1, client_name="in2n-blender demo") as client:
                rtts = [client.ping(f"demo-{i}") * 1000 for i in range(5)]
                hello = client.hello()  # waits for the backend's one-time torch/GPU probe
                print(json.dumps({
                    "url": info.url,
                    "protocol_version": hello.protocol_version,
                    "server": f"{hello.server_name} {hello.server_version} (python {hello.python_version}, pid {hello.pid})",
                    "device": hello.device_status,
                    "gpu_name": hello.gpu_name,
                    "ping_rtt_ms": [round(r, 3) for r in rtts],
                }, indent=2), flush=True)
                client.shutdown("demo finished")
            code = backend.wait(timeout=30)
            print(f"[demo] backend stopped cleanly (exit {code})" if code == 0 else f"[demo] backend exit {code}")
            return 0 if code == 0 else 1
        except (ProtocolError, RuntimeError) as exc:
            print(f"[demo] failed: {exc}", file=sys.stderr)
            if log_file.exists():
                sys.stderr.write(log_file.read_text()[-4000:])
            return 1
        finally:
            if backend.poll() is None:
                backend.terminate()
                backend.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
