"""The one editor the job service keeps in memory between jobs and 2D previews (GPU memory holds one model).

A running job holds it from its start to its end; between jobs the preview thread borrows it. A starting job never
waits for a whole preview: it interrupts the borrowing one before its next DDIM step and takes the editor over (the
preview is then made by the job, between its steps).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


def editor_key(config: Any) -> tuple[Any, ...]:
    """What makes two editors the same model in the same place (of an ``EditJobConfig``)."""
    return (config.editor.source, config.editor.device or config.device, config.memory_mode,
            config.editor.max_side)


class EditorCache:
    def __init__(self) -> None:
        self._cached: tuple[tuple[Any, ...], Any] | None = None
        self._lock = threading.Lock()
        """Held while a preview borrows the editor, and briefly by a job taking or giving it back."""
        self._job_holds = False
        """A job holds the editor (loaded or still to be loaded): nobody else may load one."""
        self.wanted = threading.Event()
        """Set while a starting job waits for the editor: the borrowing preview stops before its next DDIM step."""

    def claim(self, key: tuple[Any, ...]) -> Any:
        """For a starting job: the cached editor if it is ``key``'s, else None (the job loads its own; a cached
        other model is dropped first: never two). The job holds the editor until :meth:`release`."""
        self.wanted.set()
        try:
            with self._lock:  # a borrowing preview gives it back before its next DDIM step (or once it has loaded)
                self._job_holds = True
                return self._take(key)
        finally:
            self.wanted.clear()

    def release(self, key: tuple[Any, ...], editor: Any) -> None:
        """The job has ended: its editor (None when it never loaded one) is kept for previews and the next job."""
        with self._lock:
            if editor is not None:
                self._cached = (key, editor)
            self._job_holds = False

    @contextlib.contextmanager
    def borrowed(self, key: tuple[Any, ...], config: Any) -> Iterator[Any]:
        """The editor for ``key`` outside a job (the cached one, or loaded now), cached again afterwards; None while
        a job holds the editor (the work goes to that job, or waits for it)."""
        from backend.editing.loaders import load_editor
        from backend.editing.memory import resolve_device

        with self._lock:
            if self._job_holds:
                yield None
                return
            editor = self._take(key)  # a cached other model is freed before this one loads
            if editor is None:
                editor = load_editor(config.editor.source, device=resolve_device(config.editor.device or config.device),
                                     memory_mode=config.memory_mode, max_side=config.editor.max_side)
            try:
                yield editor
            finally:
                self._cached = (key, editor)

    def _take(self, key: tuple[Any, ...]) -> Any:
        """The cached editor if it is ``key``'s, else None; either way the cache is emptied (never hold two). With
        the lock held."""
        editor = self._cached[1] if self._cached is not None and self._cached[0] == key else None
        self._cached = None
        return editor
