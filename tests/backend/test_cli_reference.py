"""The README's command-line reference is what ``--help`` says: every option, its default and unit."""

from __future__ import annotations

from pathlib import Path

from backend.cli_edit import build_parser
from backend.cli_help import option_rows, tables
from backend.server.cli import serve_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_holds_exactly_the_generated_option_tables() -> None:
    readme = README.read_text(encoding="utf-8")
    for command, table in tables().items():
        assert f"### `python -m backend {command}`\n\n{table}\n" in readme, (
            f"README's `{command}` options differ from --help: regenerate with `python -m backend.cli_help`")


def test_every_option_says_its_default() -> None:
    for parser in (build_parser(), serve_parser()):
        for flags, default, _ in option_rows(parser):
            assert default, f"{parser.prog} {flags}: the help states no default"
