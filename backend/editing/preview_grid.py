"""Try an instruction in 2D first: the job's editor edits one view for a grid of text x image guidance scales.

Instruct-NeRF2NeRF's users are told to pick guidance scales by trying the edit in 2D. This runs exactly the edit that
Iterative Dataset Update runs (``ImageEditor.edit``: the view noised to ``noise_level`` of the schedule, conditioned
on the same view and the instruction), once per cell, with the same noise in every cell so that only the scales
differ. The server streams the cells as they come; the CLI (``python -m backend edit-preview``) and the server both
lay them out with :func:`grid_image`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from backend.editing.base import ImageEditor
from backend.pixels import to_uint8

LABEL_HEIGHT = 14
"""Rows of the label strip above each cell ("T 7.5  I 1.5": text and image guidance)."""
MIN_CELL_WIDTH = 128
"""Cells narrower than this are enlarged (nearest neighbour) so their label fits."""


@dataclass(frozen=True)
class GridCell:
    index: int
    """Row by row: row = image guidance scale, column = text guidance scale."""
    guidance_scale: float
    image_guidance_scale: float
    image: np.ndarray
    """``H W 3`` uint8, the edited view."""
    seconds: float


def edit_cells(editor: ImageEditor, image: np.ndarray, instruction: str, guidance_scales: Sequence[float],
               image_guidance_scales: Sequence[float], *, ddim_steps: int, noise_level: float, seed: int,
               on_cell: Callable[[GridCell], None] = lambda cell: None,
               should_stop: Callable[[], bool] = lambda: False) -> list[GridCell]:
    """Edit ``image`` (``H W 3`` uint8) once per pair of scales; ``on_cell`` gets each cell as soon as it exists."""
    device = _device_of(editor)
    view = torch.from_numpy(np.array(image[..., :3])).permute(2, 0, 1)[None].float().div(255).to(device)
    encoded = editor.encode_instruction(instruction)
    timestep = min(editor.num_train_timesteps, max(1, round(noise_level * editor.num_train_timesteps)))
    cells: list[GridCell] = []
    for row, image_scale in enumerate(image_guidance_scales):
        for column, text_scale in enumerate(guidance_scales):
            if should_stop():
                return cells
            started = time.perf_counter()
            edited = editor.edit(view, view, encoded, timestep=timestep, guidance_scale=float(text_scale),
                                 image_guidance_scale=float(image_scale), ddim_steps=ddim_steps,
                                 generator=torch.Generator().manual_seed(seed))  # one noise: only the scales differ
            pixels = to_uint8(edited[0].permute(1, 2, 0))
            cell = GridCell(row * len(guidance_scales) + column, float(text_scale), float(image_scale), pixels,
                            time.perf_counter() - started)
            cells.append(cell)
            on_cell(cell)
    return cells


def _device_of(editor: ImageEditor) -> torch.device:
    device = getattr(editor, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


def label(cell: GridCell) -> str:
    return f"T {cell.guidance_scale:g}  I {cell.image_guidance_scale:g}"


def cell_scale(width: int) -> int:
    """How much a cell of ``width`` pixels is enlarged in the grid."""
    return max(1, -(-MIN_CELL_WIDTH // width))


def grid_image(cells: Sequence[GridCell], columns: int) -> np.ndarray:
    """The cells row by row, each under a label strip naming its scales (``T`` text, ``I`` image guidance): cells
    of ``LABEL_HEIGHT + k H`` by ``k W`` pixels (``k = cell_scale(W)``), uint8 RGB."""
    from PIL import Image, ImageDraw

    height, width = cells[0].image.shape[:2]
    scale = cell_scale(width)
    height, width = height * scale, width * scale
    rows = -(-len(cells) // columns)
    canvas = Image.new("RGB", (columns * width, rows * (LABEL_HEIGHT + height)), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for cell in cells:
        x, y = (cell.index % columns) * width, (cell.index // columns) * (LABEL_HEIGHT + height)
        canvas.paste(Image.fromarray(cell.image).resize((width, height), Image.Resampling.NEAREST),
                     (x, y + LABEL_HEIGHT))
        draw.text((x + 3, y + 1), label(cell), fill=(235, 235, 235))
    return np.asarray(canvas)
