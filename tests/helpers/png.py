"""A PNG reader in the standard library and numpy, for tests in Blender's environments (no Pillow there): what the
add-on uploads as files is decoded independently of the backend's Pillow."""

from __future__ import annotations

import struct
import zlib

import numpy as np

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def read_png_bytes(data: bytes) -> np.ndarray:
    """``H W C`` uint8 (``H W`` for grey) of an 8-bit, non-interlaced PNG (as Blender writes them)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    offset, compressed, header = 8, b"", None
    while offset < len(data):
        (length,), tag = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            compressed += body
        offset += 12 + length
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or interlace or color_type not in CHANNELS:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {color_type}, interlace {interlace})")
    channels = CHANNELS[color_type]
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(compressed), np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), np.int32)
    previous = np.zeros(stride, np.int32)
    for row in range(height):
        kind, line = raw[row, 0], raw[row, 1:].astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 2:
            current = (line + previous) & 0xFF
        else:  # sub, average and Paeth depend on the pixel to the left: one pixel at a time
            current = np.zeros(stride, np.int32)
            for i in range(stride):
                left = current[i - channels] if i >= channels else 0
                up, corner = previous[i], previous[i - channels] if i >= channels else 0
                if kind == 1:
                    predictor = left
                elif kind == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                current[i] = (line[i] + predictor) & 0xFF
        image[row] = current
        previous = current
    pixels = image.astype(np.uint8).reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels
