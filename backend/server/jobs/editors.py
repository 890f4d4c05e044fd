"""The one editor the job service keeps in memory between jobs and 2D previews (GPU memory holds one model)."""

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
        """Held while the editor is in use outside a job (a preview): a starting job waits for it rather than
        loading a second model."""

    def take(self, key: tuple[Any, ...]) -> Any:
        """The cached editor if it is ``key``'s, else None; either way the cache is emptied (never hold two)."""
        with self._lock:
            return self._take(key)

    def _take(self, key: tuple[Any, ...]) -> Any:
        editor = self._cached[1] if self._cached is not None and self._cached[0] == key else None
        self._cached = None
        return editor

    def keep(self, key: tuple[Any, ...], editor: Any) -> None:
        self._cached = (key, editor)

    @contextlib.contextmanager
    def borrowed(self, key: tuple[Any, ...], config: Any) -> Iterator[Any]:
        """The editor for ``key`` outside a job (the cached one, or loaded now), cached again afterwards."""
        from backend.editing.loaders import load_editor
        from backend.editing.memory import resolve_device

        with self._lock:
            editor = self._take(key)
            if editor is None:
                editor = load_editor(config.editor.source, device=resolve_device(config.editor.device or config.device),
                                     memory_mode=config.memory_mode, max_side=config.editor.max_side)
            try:
                yield editor
            finally:
                self._cached = (key, editor)
