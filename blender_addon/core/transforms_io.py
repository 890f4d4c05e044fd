"""nerfstudio ``transforms.json`` captures: reading (with global/per-frame intrinsics) and atomic writing.

A frame's intrinsics may be given per frame or once at the top level (nerfstudio's ``NerfstudioDataParser`` reads
both, per-frame winning). Reading resolves them per frame; writing puts shared values at the top level and only
differing ones per frame, so a capture read and written again keeps its meaning.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .camera_model import Intrinsics

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


class CaptureError(ValueError):
    """A ``transforms.json`` that cannot be used; the message names the file and the bad field."""


@dataclass
class CaptureFrame:
    """One posed image of a capture."""

    file_path: str
    """As written in the file (relative to the capture folder, usually ``images/frame_00001.png``)."""
    intrinsics: Intrinsics
    transform_matrix: list[list[float]]
    """4x4 camera-to-world, OpenGL/Blender camera axes."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other per-frame keys (e.g. ``mask_path``, distortion), kept for writing back."""


@dataclass
class Capture:
    frames: list[CaptureFrame]
    camera_model: str = "OPENCV"
    extra: dict[str, Any] = field(default_factory=dict)
    """Other top-level keys (e.g. ``applied_transform``, ``ply_file_path``), kept for writing back."""

    def image_path(self, folder: Path, frame: CaptureFrame) -> Path:
        return (folder / frame.file_path).resolve()


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CaptureError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _matrix(value: Any, where: str) -> list[list[float]]:
    if not isinstance(value, list) or len(value) not in (3, 4) or any(not isinstance(r, list) or len(r) != 4 for r in value):
        raise CaptureError(f"{where}: expected a 4x4 (or 3x4) matrix")
    rows = [[_number(v, f"{where}[{r}][{c}]") for c, v in enumerate(row)] for r, row in enumerate(value)]
    if len(rows) == 3:
        rows.append([0.0, 0.0, 0.0, 1.0])
    return rows


def parse_capture(data: Any, source: str = "transforms.json") -> Capture:
    """Validate and resolve a parsed ``transforms.json``; :class:`CaptureError` names the bad field."""
    if not isinstance(data, dict):
        raise CaptureError(f"{source}: top level must be a JSON object")
    frames_data = data.get("frames")
    if not isinstance(frames_data, list) or not frames_data:
        raise CaptureError(f"{source}: 'frames' must be a non-empty list")
    shared = {key: data[key] for key in (*INTRINSIC_KEYS, *DISTORTION_KEYS) if key in data}
    frames = []
    for index, frame in enumerate(frames_data):
        where = f"{source}: frames[{index}]"
        if not isinstance(frame, dict):
            raise CaptureError(f"{where}: must be an object")
        if not isinstance(frame.get("file_path"), str) or not frame["file_path"]:
            raise CaptureError(f"{where}.file_path: missing or not a string")
        if "transform_matrix" not in frame:
            raise CaptureError(f"{where}.transform_matrix: missing")
        values = {**shared, **frame}
        missing = [key for key in INTRINSIC_KEYS if key not in values]
        if missing:
            raise CaptureError(f"{where}.{missing[0]}: missing (neither in the frame nor at the top level)")
        numbers = {key: _number(values[key], f"{where}.{key}") for key in INTRINSIC_KEYS}
        for key in ("fl_x", "fl_y", "w", "h"):
            if numbers[key] <= 0:
                raise CaptureError(f"{where}.{key}: must be > 0, got {numbers[key]}")
        intrinsics = Intrinsics(numbers["fl_x"], numbers["fl_y"], numbers["cx"], numbers["cy"], int(numbers["w"]), int(numbers["h"]))
        extra = {k: v for k, v in frame.items() if k not in ("file_path", "transform_matrix", *INTRINSIC_KEYS)}
        for key in DISTORTION_KEYS:
            if key in shared and key not in extra:
                extra[key] = shared[key]
        frames.append(CaptureFrame(frame["file_path"], intrinsics, _matrix(frame["transform_matrix"], f"{where}.transform_matrix"), extra))
    camera_model = data.get("camera_model", "OPENCV")
    extra = {k: v for k, v in data.items() if k not in ("frames", "camera_model", *INTRINSIC_KEYS, *DISTORTION_KEYS)}
    return Capture(frames=frames, camera_model=str(camera_model), extra=extra)


def read_capture(path: str | os.PathLike[str]) -> Capture:
    target = Path(path)
    if target.is_dir():
        target = target / "transforms.json"
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaptureError(f"{target}: no such file") from None
    except ValueError as exc:
        raise CaptureError(f"{target}: not valid JSON ({exc})") from None
    return parse_capture(data, str(target))


def capture_to_json(capture: Capture) -> dict[str, Any]:
    """The ``transforms.json`` object: each intrinsic's most common value at the top level, frames that differ
    carry their own (nerfstudio reads per-frame values over top-level ones)."""
    per_frame = [{**frame.extra, **_intrinsics_dict(frame.intrinsics)} for frame in capture.frames]
    shared: dict[str, Any] = {}
    for key in (*INTRINSIC_KEYS, *DISTORTION_KEYS):
        encoded = [json.dumps(frame[key]) for frame in per_frame if key in frame]
        if len(encoded) == len(per_frame):  # only keys every frame has can move to the top level
            most_common = max(dict.fromkeys(encoded), key=encoded.count)  # ties: the first frame's value
            shared[key] = json.loads(most_common)
    frames = []
    for frame, own in zip(capture.frames, per_frame):
        entry: dict[str, Any] = {"file_path": frame.file_path, "transform_matrix": frame.transform_matrix}
        entry.update({k: v for k, v in own.items() if k not in shared or v != shared[k]})
        frames.append(entry)
    return {"camera_model": capture.camera_model, **shared, **capture.extra, "frames": frames}


def _intrinsics_dict(intrinsics: Intrinsics) -> dict[str, Any]:
    return {"fl_x": intrinsics.fl_x, "fl_y": intrinsics.fl_y, "cx": intrinsics.cx, "cy": intrinsics.cy,
            "w": intrinsics.w, "h": intrinsics.h}


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON so that a reader sees the old file or the whole new one, never half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def write_capture(path: str | os.PathLike[str], capture: Capture) -> Path:
    return write_json_atomic(path, capture_to_json(capture))
