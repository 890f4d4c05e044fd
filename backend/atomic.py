"""Atomic file writes: write a temporary file next to the target, fsync, then ``os.replace``.

A job killed at any moment leaves either the previous complete file or the new complete file, never a torn one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from backend.pixels import to_uint8
from protocol.files import atomic_write


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces ``path`` only if the block finishes without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, data)


def write_json(path: Path | str, value: Any) -> None:
    write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def write_png(path: Path | str, image: np.ndarray, compress_level: int = 6) -> None:
    """``H W 3`` uint8 (or float in [0, 1]) image as PNG (``compress_level`` 0-9: zlib effort, lossless either way);
    ``H W`` uint8 or uint16 as a grey PNG of that depth (masks, millimetre depth)."""
    from PIL import Image

    if image.ndim == 2 and image.dtype in (np.uint8, np.uint16):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
        write_bytes(path, buffer.getvalue())
        return
    if image.dtype != np.uint8:
        image = to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    write_bytes(path, buffer.getvalue())


def write_with(path: Path | str, writer: Callable[[Path], Any]) -> None:
    """For libraries that only write to a file name (open3d): ``writer(temporary_path)``, then rename.

    The temporary name keeps the target's suffix, because such writers pick the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        result = writer(temporary)
        if result is False or not temporary.exists():
            raise OSError(f"writing {path.name} failed")
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
