"""Load and validate a nerfstudio-format scene before any heavy work starts.

A scene is a folder with ``transforms.json`` (intrinsics ``fl_x, fl_y, cx, cy, w, h`` at the top level or per frame,
and ``frames[].file_path`` + ``frames[].transform_matrix``, camera-to-world in the OpenGL/Blender convention) and the
images it names. Every problem is reported as a :class:`SceneError` whose ``field`` names the bad JSON field or file,
so the CLI and the server can show the user exactly what to fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


class SceneError(ValueError):
    """The scene cannot be used. ``field`` is the JSON path (``frames[3].transform_matrix``) or file at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class PinholeCamera:
    """A camera in the INPUT scene's frame (transforms.json's, e.g. Blender's world): OpenGL axes (Blender's camera
    axes), pixel intrinsics with the origin at the top-left corner."""

    c2w: np.ndarray
    """``4 4`` camera-to-world matrix."""
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    width: int
    height: int


@dataclass(frozen=True)
class SceneFrame(PinholeCamera):
    """One view of a scene: its camera and the image it took."""

    image_path: Path = Path()
    """Absolute path of the image."""


@dataclass(frozen=True)
class Scene:
    root: Path
    """Folder holding ``transforms.json``."""
    frames: tuple[SceneFrame, ...]

    @property
    def num_views(self) -> int:
        return len(self.frames)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SceneError(field, f"must be a finite number, got {value!r}")
    return float(value)


def _intrinsic(frame: dict[str, Any], meta: dict[str, Any], name: str, index: int) -> float:
    if name in frame:
        return _number(frame[name], f"frames[{index}].{name}")
    if name in meta:
        return _number(meta[name], name)
    raise SceneError(name, f"missing (needed at the top level of transforms.json or in frames[{index}])")


def _matrix(value: Any, field: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SceneError(field, "must be a 4x4 list of numbers") from None
    if matrix.shape != (4, 4):
        raise SceneError(field, f"must be 4x4, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise SceneError(field, "contains NaN or infinite values")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-8:
        raise SceneError(field, "rotation part is singular")
    return matrix


def load_scene(root: Path | str) -> Scene:
    """Read and check ``root/transforms.json`` and decode every image it names once (catches truncated files)."""
    root = Path(root)
    transforms = root / "transforms.json"
    if not transforms.is_file():
        raise SceneError(str(transforms), "transforms.json not found")
    try:
        meta = json.loads(transforms.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SceneError(str(transforms), f"not readable JSON ({error})") from None
    if not isinstance(meta, dict):
        raise SceneError(str(transforms), "must hold a JSON object")
    raw_frames = meta.get("frames")
    if not isinstance(raw_frames, list):
        raise SceneError("frames", "missing or not a list")
    if not raw_frames:
        raise SceneError("frames", "zero frames: the scene needs at least one camera with an image")
    frames = []
    for index, raw in enumerate(raw_frames):
        if not isinstance(raw, dict):
            raise SceneError(f"frames[{index}]", "must be an object")
        if not isinstance(raw.get("file_path"), str):
            raise SceneError(f"frames[{index}].file_path", "missing or not a string")
        if "transform_matrix" not in raw:
            raise SceneError(f"frames[{index}].transform_matrix", "missing")
        c2w = _matrix(raw["transform_matrix"], f"frames[{index}].transform_matrix")
        values = {name: _intrinsic(raw, meta, name, index) for name in INTRINSICS}
        width, height = int(values["w"]), int(values["h"])
        if width <= 0 or height <= 0 or width != values["w"] or height != values["h"]:
            raise SceneError("w/h", f"image size must be positive integers, got {values['w']} x {values['h']}")
        for name in ("fl_x", "fl_y"):
            if values[name] <= 0:
                raise SceneError(name, f"focal length must be positive, got {values[name]}")
        image_path = (root / raw["file_path"]).resolve()
        _check_image(image_path, width, height, f"frames[{index}].file_path")
        frames.append(SceneFrame(c2w=c2w, fl_x=values["fl_x"], fl_y=values["fl_y"], cx=values["cx"], cy=values["cy"],
                                 width=width, height=height, image_path=image_path))
    sizes = {(frame.width, frame.height) for frame in frames}
    if len(sizes) > 1:
        raise SceneError("w/h", f"all frames must share one image size, found {sorted(sizes)}")
    return Scene(root.resolve(), tuple(frames))


def _check_image(path: Path, width: int, height: int, field: str) -> None:
    if not path.is_file():
        raise SceneError(f"{field} ({path})", "image file not found")
    try:
        with Image.open(path) as image:
            image.verify()  # decodes the structure without the pixels; catches truncated / non-image files
        with Image.open(path) as image:
            size = image.size
            image.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise SceneError(f"{field} ({path})", f"unreadable image ({error})") from None
    if size != (width, height):
        raise SceneError(f"{field} ({path})", f"image is {size[0]}x{size[1]} but w x h is {width}x{height}")
