from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import protocol
from protocol import ConnectionInfo, read_connection_file, write_connection_file


def test_connection_file_is_private_and_round_trips(tmp_path: Path) -> None:
    info = ConnectionInfo(host="127.0.0.1", port=5555, pid=42)
    path = write_connection_file(tmp_path / "sub" / "conn.json", info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_connection_file(path) == info
    data = json.loads(path.read_text())
    assert {"transport", "host", "port", "key", "signature_scheme"} <= set(data)
    assert len(info.key) == 64 and info.key != ConnectionInfo().key  # fresh random 256-bit keys
    assert [p.name for p in path.parent.iterdir()] == ["conn.json"]  # no temp file left behind


def test_readable_file_and_bad_content_are_refused(tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "c.json", ConnectionInfo(port=1))
    os.chmod(path, 0o644)
    with pytest.raises(protocol.ConnectionFileError, match="expected 600"):
        read_connection_file(path)
    with pytest.raises(protocol.ConnectionFileError, match="no such connection file"):
        read_connection_file(tmp_path / "missing.json")
    for data, field in [({"host": "h", "key": "k"}, "port"), ({"host": "h", "port": 0, "key": "k"}, "port"),
                        ({"host": "h", "port": 1, "key": "k", "signature_scheme": "md5"}, "signature_scheme")]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data))
        os.chmod(bad, 0o600)
        with pytest.raises(protocol.ConnectionFileError) as info:
            read_connection_file(bad)
        assert info.value.field == field


def test_non_loopback_bind_requires_a_key() -> None:
    protocol.check_bind("127.0.0.1", "")
    protocol.check_bind("::1", "")
    protocol.check_bind("0.0.0.0", "secret")
    with pytest.raises(protocol.ConnectionFileError, match="requires a key"):
        protocol.check_bind("0.0.0.0", "")
    with pytest.raises(protocol.ConnectionFileError):
        protocol.check_bind("192.168.1.5", "")
