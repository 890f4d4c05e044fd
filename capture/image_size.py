"""Pixel size of PNG and JPEG files from their headers (stdlib only: Blender and the backend both read captures)."""

from __future__ import annotations

import struct
from pathlib import Path

from .model import CaptureError

#: What :func:`image_size` reads, and the suffixes an extensionless NeRF-synthetic ``file_path`` may stand for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
"""Channels of a PNG by its IHDR colour type (grey, RGB, palette, grey + alpha, RGBA)."""


def png_layout(path: Path) -> tuple[int, int, int, int]:
    """``(width, height, channels, bit depth)`` of a PNG from its header (palette images count as RGB);
    :class:`CaptureError` names the file when it is not a PNG."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError as error:
        raise CaptureError(str(path), f"cannot read ({error.strerror or error})") from None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 26:
        raise CaptureError(str(path), "not a PNG image")
    width, height = struct.unpack(">II", head[16:24])
    depth, color_type = head[24], head[25]
    if color_type not in PNG_CHANNELS:
        raise CaptureError(str(path), f"unknown PNG colour type {color_type}")
    return int(width), int(height), PNG_CHANNELS[color_type], 8 if color_type == 3 else int(depth)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG or JPEG; :class:`CaptureError` names the file otherwise."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return int(width), int(height)
            if head[:2] == b"\xff\xd8":
                handle.seek(2)
                return _jpeg_size(handle, path)
    except OSError as error:
        raise CaptureError(str(path), f"cannot read ({error.strerror or error})") from None
    raise CaptureError(str(path), "not a PNG or JPEG image")


def _jpeg_size(handle, path: Path) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Walk the JPEG markers up to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC), which holds the size."""
    while True:
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise CaptureError(str(path), "damaged JPEG (no frame header)")
        kind = marker[1]
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:  # markers without a length
            continue
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            raise CaptureError(str(path), "damaged JPEG (truncated)")
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            data = handle.read(5)
            if len(data) < 5:
                raise CaptureError(str(path), "damaged JPEG (truncated frame header)")
            height, width = struct.unpack(">HH", data[1:5])
            return int(width), int(height)
        handle.seek(length - 2, 1)


def resolve_image(folder: Path, file_path: str) -> str:
    """``file_path`` as written, or (NeRF-synthetic's extensionless ``./train/r_0``) with the suffix of the image file
    that exists; relative to ``folder``, normalised (no leading ``./``)."""
    relative = Path(file_path)
    if (folder / relative).is_file():
        return relative.as_posix()
    for suffix in IMAGE_SUFFIXES:
        candidate = relative.with_name(relative.name + suffix)
        if (folder / candidate).is_file():
            return candidate.as_posix()
    raise CaptureError(str(folder / relative), f"image not found (also tried {', '.join(IMAGE_SUFFIXES[:3])})")
