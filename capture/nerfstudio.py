"""nerfstudio's ``transforms.json``: reading (with global/per-frame intrinsics) and atomic writing.

A frame's intrinsics may be given per frame or once at the top level (nerfstudio's ``NerfstudioDataParser`` reads
both, per-frame winning). Reading resolves them per frame; writing puts shared values at the top level and only
differing ones per frame, so a capture read and written again keeps its meaning.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

try:
    from ..protocol.files import atomic_write  # type: ignore[import-not-found,unused-ignore]  # vendored beside it
except ImportError:  # a repository checkout: the top-level package
    from protocol.files import atomic_write
from .model import Capture, CaptureError, CaptureFrame, Intrinsics

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def number(value: Any, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CaptureError(source, f"expected a finite number, got {value!r}", field)
    return float(value)


def matrix(value: Any, source: str, field: str) -> list[list[float]]:
    """A 4x4 (or 3x4, completed) camera-to-world of finite numbers with an invertible rotation."""
    if not isinstance(value, list) or len(value) not in (3, 4) or any(not isinstance(r, list) or len(r) != 4 for r in value):
        raise CaptureError(source, "expected a 4x4 (or 3x4) matrix", field)
    rows = [[number(v, source, f"{field}[{r}][{c}]") for c, v in enumerate(row)] for r, row in enumerate(value)]
    if len(rows) == 3:
        rows.append([0.0, 0.0, 0.0, 1.0])
    (a, b, c), (d, e, f), (g, h, i) = (row[:3] for row in rows[:3])
    if abs(a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)) < 1e-8:
        raise CaptureError(source, "rotation part is singular", field)
    return rows


def parse_capture(data: Any, source: str = "transforms.json") -> Capture:
    """Validate and resolve a parsed ``transforms.json``; :class:`CaptureError` names the bad field."""
    if not isinstance(data, dict):
        raise CaptureError(source, "top level must be a JSON object")
    frames_data = data.get("frames")
    if not isinstance(frames_data, list) or not frames_data:
        raise CaptureError(source, "must be a non-empty list of frames (cameras with an image)", "frames")
    shared = {key: data[key] for key in (*INTRINSIC_KEYS, *DISTORTION_KEYS) if key in data}
    frames = []
    for index, frame in enumerate(frames_data):
        where = f"frames[{index}]"
        if not isinstance(frame, dict):
            raise CaptureError(source, "must be an object", where)
        if not isinstance(frame.get("file_path"), str) or not frame["file_path"]:
            raise CaptureError(source, "missing or not a string", f"{where}.file_path")
        if "transform_matrix" not in frame:
            raise CaptureError(source, "missing", f"{where}.transform_matrix")
        numbers = {}
        for key in INTRINSIC_KEYS:  # per-frame values win over top-level ones (nerfstudio's rule)
            if key in frame:
                numbers[key] = number(frame[key], source, f"{where}.{key}")
            elif key in shared:
                numbers[key] = number(shared[key], source, key)
            else:
                raise CaptureError(source, "missing (neither in the frame nor at the top level)", f"{where}.{key}")
        for key in ("fl_x", "fl_y", "w", "h"):
            if numbers[key] <= 0:
                raise CaptureError(source, f"must be > 0, got {numbers[key]}", key if key not in frame else f"{where}.{key}")
        for key in ("w", "h"):
            if numbers[key] != int(numbers[key]):
                raise CaptureError(source, f"image size must be whole pixels, got {numbers[key]}", key)
        intrinsics = Intrinsics(numbers["fl_x"], numbers["fl_y"], numbers["cx"], numbers["cy"], int(numbers["w"]), int(numbers["h"]))
        extra = {k: v for k, v in frame.items() if k not in ("file_path", "transform_matrix", *INTRINSIC_KEYS)}
        for key in DISTORTION_KEYS:
            if key in shared and key not in extra:
                extra[key] = shared[key]
        frames.append(CaptureFrame(frame["file_path"], intrinsics,
                                   matrix(frame["transform_matrix"], source, f"{where}.transform_matrix"), extra))
    camera_model = data.get("camera_model", "OPENCV")
    extra = {k: v for k, v in data.items() if k not in ("frames", "camera_model", *INTRINSIC_KEYS, *DISTORTION_KEYS)}
    return Capture(frames=frames, camera_model=str(camera_model), extra=extra)


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaptureError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CaptureError(str(path), f"not readable JSON ({exc})") from None


def read_transforms(path: str | os.PathLike[str]) -> Capture:
    """A nerfstudio ``transforms.json`` (or the folder holding it)."""
    target = Path(path)
    if target.is_dir():
        target = target / "transforms.json"
    capture = parse_capture(load_json(target), str(target))
    capture.source = target
    return capture


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
    return Path(atomic_write(path, json.dumps(data, indent=2).encode("utf-8")))


def write_transforms(path: str | os.PathLike[str], capture: Capture) -> Path:
    """Write ``capture`` as a nerfstudio ``transforms.json`` (atomically)."""
    return write_json_atomic(path, capture_to_json(capture))
