"""What a capture is, whatever layout it came in: posed pinhole images (nerfstudio's conventions).

Cameras are camera-to-world 4x4 matrices with OpenGL/Blender camera axes (x right, y up, looking down -z); intrinsics
are in pixels with the origin at the top-left corner of the image (nerfstudio's ``transforms.json`` keys).
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any


class CaptureError(ValueError):
    """A capture that cannot be used; the message names the file and the bad field (``source: field: problem``)."""

    def __init__(self, source: str, problem: str, field: str = "") -> None:
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")
        self.source = source
        """The file or folder at fault."""
        self.field = field
        """The JSON path of the bad value (``frames[3].transform_matrix``), or empty for a whole-file problem."""
        self.problem = problem


@dataclass(frozen=True)
class Intrinsics:
    """nerfstudio pinhole intrinsics (``transforms.json`` keys)."""

    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int


@dataclass
class CaptureFrame:
    """One posed image of a capture."""

    file_path: str
    """Relative to the capture folder, with its extension (``images/frame_00001.png``, ``train/r_0.png``)."""
    intrinsics: Intrinsics
    transform_matrix: list[list[float]]
    """4x4 camera-to-world, OpenGL/Blender camera axes."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other per-frame keys (e.g. ``mask_path``, distortion ``k1``..``p2``, ``target_file_path``), kept for writing
    back."""
    split: str = "train"
    """``train`` (edited), or ``val`` / ``test`` (held-out views of layouts that have splits)."""

    @property
    def image_name(self) -> str:
        """Where a copy of this image goes inside a job or an exported capture: ``file_path`` when it stays inside
        the capture folder, else ``external/<hash>-<file name>`` (absolute and ``../`` paths, which nerfstudio
        allows), so that a copy never lands outside its folder or on the original."""
        posix = self.file_path.replace("\\", "/")
        inside = not (PurePosixPath(posix).is_absolute() or PureWindowsPath(self.file_path).is_absolute())
        normal = posixpath.normpath(posix)
        if inside and normal != ".." and not normal.startswith("../"):
            return normal
        digest = hashlib.sha1(self.file_path.encode()).hexdigest()[:8]
        return f"external/{digest}-{PurePosixPath(posix).name}"


@dataclass
class Capture:
    frames: list[CaptureFrame]
    camera_model: str = "OPENCV"
    extra: dict[str, Any] = field(default_factory=dict)
    """Other top-level keys (e.g. ``applied_transform``, ``ply_file_path``), kept for writing back."""
    layout: str = "nerfstudio"
    """The layout it was read from (:data:`capture.LAYOUTS`)."""
    source: Path | None = None
    """The file or folder it was read from."""

    def image_path(self, folder: Path, frame: CaptureFrame) -> Path:
        return (folder / frame.file_path).resolve()

    @property
    def train_frames(self) -> list[CaptureFrame]:
        return [frame for frame in self.frames if frame.split == "train"]
