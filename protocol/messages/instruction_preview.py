"""Try an instruction in 2D before editing in 3D (protocol 2.0): the job's own editor edits one view for a small grid
of text x image guidance scales, so the user can pick the scales before hours of NeRF training.

The request carries the view (buffer 0, raw or PNG / JPEG) and is answered at once; each edited cell and then the
labelled grid arrive as ``instruction_preview`` events (the grid's layout maps a click to its scales).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ValidationError
from ..schema import bounded, limit
from ..signing import BufferLike
from .edit import MemoryMode, check_job_id
from .registry import expect_buffers, message
from .scene import ImageInfo

MAX_SCALES = 5
"""At most this many scales along each axis of the grid (25 edits)."""


def _check_scales(scales: list[float], path: str) -> None:
    if not 1 <= len(scales) <= MAX_SCALES:
        raise ValidationError(f"give 1 to {MAX_SCALES} scales, got {len(scales)}", field=path)
    for index, scale in enumerate(scales):
        if not 0 <= scale <= 100:
            raise ValidationError(f"must be in [0, 100], got {scale}", field=f"{path}[{index}]")


@message("instruction_preview_request", "request")
@dataclass(frozen=True)
class InstructionPreviewRequest:
    instruction: str = field(metadata=limit(min_len=1, max_len=2000))
    image: ImageInfo
    """The view to edit (buffer 0), e.g. the active camera's render or a training photo."""
    guidance_scales: list[float] = bounded([5.0, 7.5, 10.0], min_len=1, max_len=MAX_SCALES)
    """Text guidance of the grid's columns."""
    image_guidance_scales: list[float] = bounded([1.2, 1.5, 1.8], min_len=1, max_len=MAX_SCALES)
    """Image guidance of the grid's rows."""
    ddim_steps: int = bounded(20, ge=1, le=1000)
    noise_level: float = bounded(0.98, gt=0, le=1)
    """Fraction of the diffusion schedule the view is noised to before editing: the schedule's ``t_max``, i.e. the
    strongest edit Iterative Dataset Update makes (close to a plain 2D InstructPix2Pix edit)."""
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    memory_mode: MemoryMode = "in2n"
    engine_overrides: dict[str, Any] = bounded({})
    """The editor settings of an edit (``editor.source``, ``editor.max_side``, ``device``); the same rules apply."""
    target: ImageInfo | None = None
    """Buffer 1: the view's intended edit, for the SIMULATED editor only (demos without weights)."""

    def validate(self, path: str) -> None:
        if not self.instruction.strip():
            raise ValidationError("must not be blank", field=f"{path}.instruction")
        _check_scales(self.guidance_scales, f"{path}.guidance_scales")
        _check_scales(self.image_guidance_scales, f"{path}.image_guidance_scales")
        if self.target is not None and self.target.shape[:2] != self.image.shape[:2]:
            raise ValidationError(f"shape {self.target.shape[:2]} differs from the image's {self.image.shape[:2]}",
                                  field=f"{path}.target.shape")

    def check_buffers(self, buffers: list[BufferLike]) -> None:
        sizes = [self.image.nbytes] + ([self.target.nbytes] if self.target is not None else [])
        expect_buffers(buffers, sizes)

    @property
    def cells(self) -> int:
        return len(self.guidance_scales) * len(self.image_guidance_scales)


@message("instruction_preview_reply", "reply")
@dataclass(frozen=True)
class InstructionPreviewReply:
    preview_id: str
    cells: int = field(metadata=limit(ge=1))
    editor: str = ""
    """What edits: an InstructPix2Pix source, ``tiny``, or ``simulated`` (not InstructPix2Pix)."""

    def validate(self, path: str) -> None:
        check_job_id(self.preview_id, f"{path}.preview_id")


@message("instruction_preview", "event")
@dataclass(frozen=True)
class InstructionPreviewEvent:
    """One edited cell (``kind: cell``), then the labelled grid (``grid``), or why it failed (``failed``). Cells are
    numbered row by row: row ``index // len(columns)`` is ``image_guidance_scales``, column ``index % len(columns)``
    is ``guidance_scales``."""

    preview_id: str
    kind: Literal["cell", "grid", "failed"]
    index: int = bounded(0, ge=0)
    count: int = bounded(1, ge=1)
    """Cells in the grid."""
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    image: ImageInfo | None = None
    """Buffer 0: the cell's edit, or the whole grid."""
    columns: list[float] = field(default_factory=list)
    """The grid's text guidance scales, left to right."""
    rows: list[float] = field(default_factory=list)
    """The grid's image guidance scales, top to bottom."""
    cell_width: int = bounded(0, ge=0)
    cell_height: int = bounded(0, ge=0)
    """Size of one cell in the grid image, its label strip included (``label_height`` rows at its top)."""
    label_height: int = bounded(0, ge=0)
    elapsed_s: float = bounded(0.0, ge=0)
    message: str = bounded("", max_len=4000)

    def check_buffers(self, buffers: list[BufferLike]) -> None:
        expect_buffers(buffers, [self.image.nbytes] if self.image is not None else [])
