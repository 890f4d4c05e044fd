"""Fuzz a real ``python -m backend serve`` process with SIGNED but malformed messages: every request type, every
field (and the fields of nested objects) missing, of the wrong type, huge, non-finite, unencodable text, deeply
nested; plus unknown types, wrong versions, unsigned and wrong-key messages. After each request type the server must
still answer ping, and nothing may appear outside its jobs folder. The tally (cases tried / answered with a clear
error / accepted / no reply / crashed) is printed and asserted.

``shutdown_request`` is left out: some of its mutations are valid (its only field is optional) and would stop the
server as asked, which is not a crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import protocol
from protocol import messages as m
from protocol.schema import encode
from tests.protocol.samples import samples

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
REPO_ROOT = Path(__file__).resolve().parents[3]

RAW = {"__INF__": "1e999", "__NEG_INF__": "-1e999", "__NAN__": "NaN", "__SURROGATE__": '"\\ud800 text"',
       "__DEEP__": "[" * 5000 + "]" * 5000}
"""Values JSON text can carry but a Python value cannot express (or should not): spliced in as raw text."""

VALUES: list[Any] = [None, True, -1, 2**70, 3.5, "", "x" * 100_000, [], [1] * 5000, {}, {"a": [{"b": {}}]},
                     *RAW]


def field_paths(value: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    """Paths to every field of a JSON object, one level into lists and two into nested objects."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            if depth < 2:
                yield from field_paths(item, (*prefix, key), depth + 1)
    elif isinstance(value, list) and value and depth < 3:
        yield from field_paths(value[0], (*prefix, 0), depth + 1)


def mutated(content: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool = False) -> bytes:
    copy = json.loads(json.dumps(content))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if delete:
        if isinstance(target, dict):
            del target[path[-1]]
        else:
            target.pop(path[-1])
    else:
        target[path[-1]] = value
    text = json.dumps(copy)
    for token, raw in RAW.items():
        text = text.replace(f'"{token}"', raw)
    return text.encode()


def cases() -> Iterator[tuple[str, str, bytes, list[bytes]]]:
    """(request type, description, content JSON, buffers)."""
    for msg_type, (content_obj, buffers) in sorted(samples().items()):
        spec = m.spec_for(msg_type)
        if spec.kind != "request" or msg_type == "shutdown_request":
            continue
        content = encode(content_obj)
        for path in field_paths(content):
            name = ".".join(map(str, path))
            yield msg_type, f"{name} missing", mutated(content, path, None, delete=True), buffers
            for value in VALUES:
                label = value if isinstance(value, str) and value in RAW else type(value).__name__
                yield msg_type, f"{name} = {label}", mutated(content, path, value), buffers
        yield msg_type, "content is a list", b"[1, 2]", buffers
        yield msg_type, "extra buffers", json.dumps(content).encode(), [*buffers, b"\0" * 1024]


class Server:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.connection = folder / "connection.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--connection-file", str(self.connection), "--jobs-dir",
             str(folder / "jobs"), "--no-device-probe", "--heartbeat", "1", "--editor", "tiny"],
            cwd=REPO_ROOT, stdout=open(folder / "stdout.log", "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 60
        while not self.connection.exists():
            assert self.process.poll() is None and time.monotonic() < deadline, (folder / "stdout.log").read_text()
            time.sleep(0.05)
        self.info = protocol.read_connection_file(self.connection)

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def send(sock: zmq.Socket[Any], session: protocol.Session, frames: list[bytes]) -> dict[str, Any] | None:
    """The reply to ``frames`` (None: none within 5 s). Events on the same socket are skipped: a mutation that is
    still a valid request (an accepted preview) streams its events in between the replies."""
    sock.send_multipart(frames)
    deadline = time.monotonic() + 5
    while sock.poll(max(0, int(1000 * (deadline - time.monotonic())))):
        received = sock.recv_multipart()
        # messages that proved no key (unsigned, wrong key) are answered unsigned; the rest signed
        message = session.read_unsigned_error(received) or session.deserialize(received)
        if message.msg_type.endswith("_reply"):
            return message.content
    return None


def signed(session: protocol.Session, msg_type: str, content: bytes, buffers: list[bytes],
           header: dict[str, Any] | None = None) -> list[bytes]:
    message = session.msg(msg_type)
    message.header.update(header or {})
    frames = [bytes(f) for f in session.serialize(message)]
    frames = [*frames[:5], content, *buffers]
    frames[1] = session.signer.sign(frames[2:])
    return frames


def header_with_surrogate(session: protocol.Session) -> list[bytes]:
    """A signed ping whose header's msg_id is a lone surrogate (escaped JSON text, as a hostile peer writes it)."""
    header = json.dumps({**session.header("ping_request"), "msg_id": "@"}).replace('"@"', '"\\ud800"')
    frames = [protocol.DELIMITER, b"", header.encode(), b"{}", b"{}", b"{}"]
    frames[1] = session.signer.sign(frames[2:])
    return frames


def test_signed_malformed_messages_of_every_type_and_field_get_clear_errors(tmp_path: Path) -> None:
    server = Server(tmp_path)
    session = protocol.Session(server.info.key_bytes)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, session.routing_id)
    sock.connect(server.info.url)
    before = {p for p in tmp_path.rglob("*") if "jobs" not in p.relative_to(tmp_path).parts}
    tally: Counter[str] = Counter()
    silent: list[str] = []
    pings: list[float] = []
    try:
        by_type: dict[str, list[tuple[str, bytes, list[bytes]]]] = {}
        for msg_type, label, content, buffers in cases():
            by_type.setdefault(msg_type, []).append((label, content, buffers))
        by_type["whole messages"] = []
        for msg_type, batch in by_type.items():
            for label, content, buffers in batch:
                reply = send(sock, session, signed(session, msg_type, content, buffers))
                tally["tried"] += 1
                if reply is None:
                    tally["no reply"] += 1
                    silent.append(f"{msg_type}: {label}")
                elif reply.get("status") == "error" and not reply.get("ename"):
                    silent.append(f"{msg_type}: {label} (error without a name)")
                elif reply.get("status") == "error" and reply.get("ename") and reply.get("evalue"):
                    tally["clear error"] += 1
                else:
                    tally["accepted"] += 1  # a mutation that is still a valid request (e.g. an optional field)
            assert server.process.poll() is None, f"the server died during {msg_type}"
            with protocol.Client(server.info, timeout_s=5, retries=0) as client:
                pings.append(client.ping())
        # whole-message variants: unknown type, wrong version, unsigned, wrong key, header garbage
        wrong_key = protocol.Session(b"not-the-key", session_id=session.session_id)
        variants = {
            "unknown type": signed(session, "launch_rockets_request", b"{}", []),
            "wrong version": signed(session, "ping_request", b"{}", [], {"protocol_version": "9.0"}),
            "unsigned": [protocol.DELIMITER, b"", *signed(session, "ping_request", b"{}", [])[2:]],
            "wrong key": [bytes(f) for f in wrong_key.serialize(wrong_key.msg("ping_request"))],
            "header surrogate": header_with_surrogate(session),
        }
        for label, frames in variants.items():
            reply = send(sock, session, frames)
            tally["tried"] += 1
            if reply is not None and reply.get("status") == "error" and reply.get("ename"):
                tally["clear error"] += 1
            else:
                tally["no reply" if reply is None else "accepted"] += 1
                silent.append(label)
        crashed = int(server.process.poll() is not None)
        with protocol.Client(server.info, timeout_s=5, retries=0) as client:
            pings.append(client.ping())
        rss = server.peak_rss_mib()
    finally:
        sock.close()
        server.process.terminate()
        server.process.wait(30)
    after = {p for p in tmp_path.rglob("*") if "jobs" not in p.relative_to(tmp_path).parts}
    summary = {**tally, "crashed": crashed, "peak_rss_mib": round(rss, 1),
               "ping_ms_max": round(1000 * max(pings), 2), "silent": silent[:10]}
    print("\nfuzz summary:", json.dumps(summary))
    assert crashed == 0 and tally["no reply"] == 0 and not silent, summary
    assert tally["clear error"] >= 0.8 * tally["tried"], summary
    assert after - before <= {tmp_path / "connection.json", tmp_path / "stdout.log"}, after - before
