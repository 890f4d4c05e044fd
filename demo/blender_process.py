"""The Blender process the demo runs in: stop requests from signals, and Blender's own lines on stdout.

Used by the add-on driver and the view renderer alike (neither imports the other)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

STOP_REQUESTED = threading.Event()
"""Set by the demo's SIGTERM / SIGINT handler. The demo stops at its next check point (:func:`check_stop`): raising
from inside the handler could land in Python code that Blender's C code called (a render, an operator) and crash it."""


def check_stop() -> None:
    """Raise ``KeyboardInterrupt`` here, in plain Python, when a stop was requested."""
    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt("stop requested")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence Blender's own per-render lines ("Saved: ...") on stdout, which Python cannot filter (Blender's C
    logger writes to file descriptor 1); stderr, where errors go, is untouched."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
