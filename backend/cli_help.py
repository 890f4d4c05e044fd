"""The README's command-line reference, generated from the parsers themselves: ``python -m backend.cli_help``
prints the option tables of ``edit``, ``edit-preview`` and ``serve``; a test checks that the README holds exactly these tables, so the
two cannot drift apart."""

from __future__ import annotations

import argparse
import re

DEFAULT = re.compile(r"\s*\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)\s*$")


def option_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    """(flags, default, help without its default) of every option, in the parser's order."""
    rows = []
    for action in parser._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        text = (action.help or "") % {"default": action.default}
        match = DEFAULT.search(text)
        if action.required:
            default = "required"
        elif action.nargs == 0:
            default = "off"
        else:
            default = match.group(1) if match else ""
        description = DEFAULT.sub("", text) if match else text
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        if action.choices and action.nargs != 0:
            flags += " " + "\\|".join(str(choice) for choice in action.choices)
        rows.append((flags, default.replace("|", "\\|"), description.replace("|", "\\|")))
    return rows


def markdown_table(parser: argparse.ArgumentParser) -> str:
    lines = ["| option | default | what it does |", "| --- | --- | --- |"]
    lines += [f"| {flags} | {default} | {description} |" for flags, default, description in option_rows(parser)]
    return "\n".join(lines)


def tables() -> dict[str, str]:
    from backend import cli_preview
    from backend.cli_edit import build_parser
    from backend.server.cli import serve_parser

    return {"edit": markdown_table(build_parser()), "edit-preview": markdown_table(cli_preview.build_parser()),
            "serve": markdown_table(serve_parser())}


if __name__ == "__main__":
    for name, table in tables().items():
        print(f"#### `python -m backend {name}`\n\n{table}\n")
