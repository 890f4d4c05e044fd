"""Grey 8- and 16-bit PNGs from numpy arrays with the standard library: Blender's environment has no Pillow, and its
own image writer would colour-manage the values (a depth PNG must hold exact millimetres)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def write_grey_png(path: Path, pixels: np.ndarray) -> None:
    """``H W`` uint8 or uint16 (row 0 = top) as a grey PNG of that bit depth."""
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected H W uint8 or uint16, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else "u1")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
