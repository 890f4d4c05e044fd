"""``python -m backend serve`` / ``ping`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import protocol

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "server did not write its connection file"
        time.sleep(0.05)


def test_serve_ping_and_shutdown(tmp_path: Path) -> None:
    conn, log = tmp_path / "conn.json", tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "backend", "serve", "--connection-file", str(conn), "--no-device-probe",
         "--log-file", str(log)], cwd=ROOT, stderr=subprocess.PIPE,
    )
    try:
        wait_for(conn, server)
        assert stat.S_IMODE(conn.stat().st_mode) == 0o600
        info = protocol.read_connection_file(conn)
        assert info.host == "127.0.0.1" and info.port > 0 and len(info.key) == 64 and info.pid == server.pid
        # the ping command must not import torch: run it in a process that reports its modules afterwards
        code = ("import sys, backend.__main__ as b; rc = b.main(['ping', '--connection-file', sys.argv[1]]); "
                "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH'); sys.exit(rc)")
        ping = subprocess.run([sys.executable, "-c", code, str(conn)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, ping.stderr
        result_line, torch_line = ping.stdout.strip().splitlines()
        result = json.loads(result_line)
        assert result["ok"] is True and result["rtt_ms"] > 0 and torch_line == "NO_TORCH"
        with protocol.Client(info, timeout_s=10) as client:
            assert client.hello().pid == server.pid
            client.shutdown("test over")
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
    assert not conn.exists()  # removed on exit
    text = log.read_text()
    assert "listening on tcp://127.0.0.1:" in text and "shutdown requested: test over" in text


def test_ping_without_server_fails_cleanly(tmp_path: Path) -> None:
    conn = protocol.write_connection_file(tmp_path / "c.json", protocol.ConnectionInfo(port=1))
    ping = subprocess.run([sys.executable, "-m", "backend", "ping", "--connection-file", str(conn), "--timeout", "0.3",
                           "--retries", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ping.returncode == 1
    assert json.loads(ping.stdout)["error"] == "RequestTimeout"


def test_sigterm_stops_the_server(tmp_path: Path) -> None:
    conn = tmp_path / "conn.json"
    server = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--connection-file", str(conn),
                               "--no-device-probe"], cwd=ROOT, stderr=subprocess.DEVNULL)
    wait_for(conn, server)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0
    assert not conn.exists()


def test_public_bind_without_key_is_refused(tmp_path: Path) -> None:
    serve = subprocess.run([sys.executable, "-m", "backend", "serve", "--bind", "0.0.0.0", "--key", "",
                            "--connection-file", str(tmp_path / "c.json")], cwd=ROOT, capture_output=True, text=True,
                           timeout=60, env={**os.environ})
    assert serve.returncode == 2 and "requires a key" in serve.stderr


def test_the_server_loop_never_imports_the_ml_stack() -> None:
    """The loop thread answers while a job thread imports torch / diffusers / transformers; importing them from the
    loop too (for an estimate, say) races with that import (seen: "cannot import name 'AutoModel'")."""
    code = ("import sys, backend.server.jobs.service, backend.cost_model; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
