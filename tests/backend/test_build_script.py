"""``build.py``'s command line: arguments after ``demo`` / ``test`` / ``addon`` reach the demo, pytest or the packager
unchanged and in order."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def build(monkeypatch):
    spec = importlib.util.spec_from_file_location("build_script", ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls: list[tuple[str, argparse.Namespace]] = []
    for name in ("command_demo", "command_test", "command_addon", "command_setup"):
        monkeypatch.setattr(module, name, lambda args, name=name: calls.append((name, args)) or 0)
    module.calls = calls
    return module


@pytest.mark.parametrize(("argv", "command", "attribute", "passed"), [
    (["demo", "--out", "/tmp/x", "--views", "3"], "command_demo", "demo_args", ["--out", "/tmp/x", "--views", "3"]),
    (["demo", "--help"], "command_demo", "demo_args", ["--help"]),
    (["test", "--no-lint", "-x", "tests/protocol", "-k", "upload"], "command_test", "pytest_args",
     ["-x", "tests/protocol", "-k", "upload"]),
    (["addon", "--out", "dist"], "command_addon", "addon_args", ["--out", "dist"]),
])
def test_passed_on_arguments_keep_their_order(build, argv, command, attribute, passed) -> None:
    assert build.main(argv) == 0
    (called, args), = build.calls
    assert called == command and getattr(args, attribute) == passed
    if command == "command_test":
        assert args.no_lint is True


def test_other_commands_parse_as_usual(build) -> None:
    assert build.main(["setup", "backend"]) == 0
    assert build.calls[0][0] == "command_setup" and build.calls[0][1].names == ["backend"]
    with pytest.raises(SystemExit):
        build.main(["setup", "--bogus"])
