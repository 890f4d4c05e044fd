"""``python -m backend COMMAND``: the backend's command line.

Commands are implemented in their own modules and imported lazily, so ``ping`` never pays for importing torch.
"""

from __future__ import annotations

import importlib
import sys

#: command -> (module, function, one-line help)
COMMANDS = {
    "edit": ("backend.cli_edit", "main", "reconstruct a nerfstudio scene and edit it with an instruction (headless)"),
    "edit-preview": ("backend.cli_preview", "main", "try an instruction in 2D on one view, as a grid of guidance scales"),
    "serve": ("backend.server.cli", "main_serve", "run the ZeroMQ server that Blender connects to"),
    "ping": ("backend.server.cli", "main_ping", "ask a running server whether it is alive"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m backend {" + ",".join(COMMANDS) + "} [--help]\n")
        for name, (_, _, summary) in COMMANDS.items():
            print(f"  {name:<12} {summary}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command: {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, function_name, _ = COMMANDS[argv[0]]
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
