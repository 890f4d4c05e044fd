"""The NeRF-synthetic ("Blender") layout that the original NeRF datasets, BlenderNeRF and instant-ngp write.

* NeRF-synthetic / BlenderNeRF: ``transforms_train.json`` (+ ``_val`` / ``_test``): ``camera_angle_x`` (horizontal
  field of view, radians), optionally ``camera_angle_y``, ``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h``; frames with
  ``file_path`` often without extension (``./train/r_0``) and ``transform_matrix`` (camera-to-world, OpenGL axes, as
  nerfstudio's). The image size comes from the images; train views are edited, val/test are held-out views.
* instant-ngp: one ``transforms.json`` with ``camera_angle_x`` or ``fl_x`` (and ``aabb_scale``, ``scale``,
  ``offset``: instant-ngp's own normalisation of the scene, kept as they are; cameras stay in the file's frame).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .image_size import image_size, resolve_image
from .model import Capture, CaptureError, CaptureFrame, Intrinsics
from .nerfstudio import DISTORTION_KEYS, load_json, matrix, number

SPLITS = ("train", "val", "test")
FRAME_KEYS = ("file_path", "transform_matrix", "fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x",
              "camera_angle_y")


def split_files(folder: Path) -> dict[str, Path]:
    """``split -> transforms_<split>.json`` of the NeRF-synthetic layout present in ``folder``."""
    return {split: folder / f"transforms_{split}.json" for split in SPLITS
            if (folder / f"transforms_{split}.json").is_file()}


def read_synthetic(folder: Path) -> Capture:
    """All splits of a NeRF-synthetic / BlenderNeRF folder (train first)."""
    files = split_files(folder)
    if "train" not in files:
        raise CaptureError(str(folder), "no transforms_train.json (NeRF-synthetic layout)")
    frames: list[CaptureFrame] = []
    extra: dict[str, Any] = {}
    for split, path in files.items():
        data = _load(path)
        frames += _frames(data, folder, path.name, split)
        if split == "train":
            extra = _top_level_extra(data)
    return Capture(frames, extra=extra, layout="nerf-synthetic", source=folder)


def read_instant_ngp(path: Path) -> Capture:
    data = _load(path)
    return Capture(_frames(data, path.parent, path.name, "train"), extra=_top_level_extra(data), layout="instant-ngp",
                   source=path)


def _load(path: Path) -> dict[str, Any]:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise CaptureError(str(path), "must be a non-empty list", "frames")
    return data


def _top_level_extra(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in FRAME_KEYS and key != "frames"}


def _frames(data: dict[str, Any], folder: Path, source: str, split: str) -> list[CaptureFrame]:
    frames = []
    for index, raw in enumerate(data["frames"]):
        where = f"frames[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("file_path"), str) or not raw["file_path"]:
            raise CaptureError(source, "missing or not a string", f"{where}.file_path")
        if "transform_matrix" not in raw:
            raise CaptureError(source, "missing", f"{where}.transform_matrix")
        values = {**data, **raw}
        file_path = resolve_image(folder, raw["file_path"])
        width, height = image_size(folder / file_path)
        if "w" in values and "h" in values and (int(number(values["w"], source, f"{where}.w")),
                                                int(number(values["h"], source, f"{where}.h"))) != (width, height):
            raise CaptureError(source, f"the image is {width}x{height} but w x h says {values['w']}x{values['h']}",
                               where)
        fl_x = _focal(values, "x", width, source, where)
        fl_y = _focal(values, "y", height, source, where) if ("fl_y" in values or "camera_angle_y" in values) else fl_x
        cx = number(values["cx"], source, f"{where}.cx") if "cx" in values else width / 2
        cy = number(values["cy"], source, f"{where}.cy") if "cy" in values else height / 2
        extra = {key: value for key, value in raw.items() if key not in FRAME_KEYS}
        extra.update({key: data[key] for key in DISTORTION_KEYS if key in data and key not in extra})
        frames.append(CaptureFrame(file_path, Intrinsics(fl_x, fl_y, cx, cy, width, height),
                                   matrix(raw["transform_matrix"], source, f"{where}.transform_matrix"), extra, split))
    return frames


def _focal(values: dict[str, Any], axis: str, size: int, source: str, where: str) -> float:
    """``fl_<axis>`` when given, else from the field of view ``camera_angle_<axis>``: ``size / 2 / tan(angle / 2)``."""
    if f"fl_{axis}" in values:
        focal = number(values[f"fl_{axis}"], source, f"{where}.fl_{axis}")
    elif f"camera_angle_{axis}" in values:
        angle = number(values[f"camera_angle_{axis}"], source, f"{where}.camera_angle_{axis}")
        if not 0 < angle < math.pi:
            raise CaptureError(source, f"a field of view in radians in (0, pi), got {angle}", f"{where}.camera_angle_{axis}")
        focal = 0.5 * size / math.tan(0.5 * angle)
    else:
        raise CaptureError(source, f"neither fl_{axis} nor camera_angle_{axis} (at the top level or in the frame)", where)
    if focal <= 0:
        raise CaptureError(source, f"must be > 0, got {focal}", f"{where}.fl_{axis}")
    return focal
