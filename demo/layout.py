"""Image layout for the demo's pictures (numpy only, so it runs in both environments and tests without Blender).

Images are ``H W 3`` uint8 arrays, row 0 at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Image = np.ndarray


@dataclass(frozen=True)
class Box:
    """A cell of a layout, in canvas pixels."""

    top: int
    left: int
    height: int
    width: int


def as_rgb8(image: np.ndarray) -> Image:
    """``H W 3`` uint8 from uint8 or float (0..1) images with 1, 3 or 4 channels."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H W C image with 1, 3 or 4 channels, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def fit(image: np.ndarray, side: int, background: Sequence[int] = (255, 255, 255)) -> Image:
    """``image`` scaled (nearest neighbour, aspect kept) into a ``side x side`` tile, centred on ``background``."""
    image = as_rgb8(image)
    height, width = image.shape[:2]
    scale = side / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    rows = np.minimum((np.arange(new_h) + 0.5) / scale, height - 1).astype(int)
    cols = np.minimum((np.arange(new_w) + 0.5) / scale, width - 1).astype(int)
    tile = np.empty((side, side, 3), np.uint8)
    tile[:] = np.asarray(background, np.uint8)
    top, left = (side - new_h) // 2, (side - new_w) // 2
    tile[top:top + new_h, left:left + new_w] = image[rows][:, cols]
    return tile


def grid(cells: Sequence[Sequence[np.ndarray | None]], tile: int, *, gap: int = 4, top: int = 0, left: int = 0,
         background: Sequence[int] = (255, 255, 255)) -> tuple[Image, list[list[Box]]]:
    """Rows of images as ``tile``-sized cells with ``gap`` pixels between them and ``top`` / ``left`` margins (room
    for labels). A None cell stays empty. Returns the canvas and every cell's box (row-major)."""
    if not cells or not all(len(row) == len(cells[0]) for row in cells) or not cells[0]:
        raise ValueError("cells must be a non-empty rectangle (every row the same, non-zero length)")
    rows, columns = len(cells), len(cells[0])
    canvas = np.empty((top + rows * tile + (rows + 1) * gap, left + columns * tile + (columns + 1) * gap, 3), np.uint8)
    canvas[:] = np.asarray(background, np.uint8)
    boxes: list[list[Box]] = []
    for r, row in enumerate(cells):
        boxes.append([])
        for c, image in enumerate(row):
            box = Box(top + gap + r * (tile + gap), left + gap + c * (tile + gap), tile, tile)
            boxes[-1].append(box)
            if image is not None:
                canvas[box.top:box.top + tile, box.left:box.left + tile] = fit(image, tile, background)
    return canvas, boxes


def strip(frames: Sequence[np.ndarray], *, gap: int = 2, columns: int | None = None,
          background: Sequence[int] = (255, 255, 255)) -> Image:
    """Frames side by side (wrapped after ``columns``), at the first frame's size."""
    if not frames:
        raise ValueError("no frames")
    side = max(as_rgb8(frames[0]).shape[:2])
    columns = columns or len(frames)
    rows: list[list[np.ndarray | None]] = [list(frames[i:i + columns]) for i in range(0, len(frames), columns)]
    rows[-1] += [None] * (columns - len(rows[-1]))
    return grid(rows, side, gap=gap, background=background)[0]


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` indices spread over ``range(total)`` (all of them when ``count >= total``)."""
    if total <= 0:
        return []
    if count >= total:
        return list(range(total))
    return sorted({int(round(i * total / count)) % total for i in range(count)})
