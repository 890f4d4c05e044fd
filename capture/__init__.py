"""Captures (posed photos) in the layouts people bring, read by one bpy-free, torch-free module (stdlib only), so the
backend's CLI and server and the Blender add-on's Import capture read them the same way.

    capture = read_capture(path)        # any layout below; capture.layout says which
    write_transforms(folder / "transforms.json", capture)   # nerfstudio's format, atomically

The add-on vendors this package into its extension zip (as it does ``protocol``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .colmap import find_model, read_colmap
from .image_size import image_size, png_layout
from .model import Capture, CaptureError, CaptureFrame, Intrinsics
from .nerfstudio import (
    DISTORTION_KEYS,
    INTRINSIC_KEYS,
    capture_to_json,
    load_json,
    parse_capture,
    read_transforms,
    write_json_atomic,
    write_transforms,
)
from .synthetic import read_instant_ngp, read_synthetic, split_files

LAYOUTS = {
    "nerfstudio": "transforms.json with fl_x, fl_y, cx, cy, w, h (nerfstudio, ns-process-data, this add-on's export)",
    "nerf-synthetic": "transforms_train.json (+ _val, _test) with camera_angle_x (NeRF-synthetic datasets, "
                      "BlenderNeRF)",
    "instant-ngp": "transforms.json with camera_angle_x or aabb_scale (instant-ngp)",
    "colmap": "a COLMAP model: sparse/0/cameras.bin|txt + images.bin|txt, photos in images/",
}
"""Accepted layouts and how each is recognised."""

COLMAP_FILES = ("cameras.bin", "cameras.txt", "images.bin", "images.txt", "points3D.bin", "points3D.txt")


def detect_layout(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """``(layout, what to read)`` for a capture folder or one of its files; :class:`CaptureError` lists the accepted
    layouts when none fits."""
    target = Path(path)
    if target.is_file():
        if target.name in COLMAP_FILES:
            return "colmap", target.parent
        if target.name.startswith("transforms_") and target.suffix == ".json":
            return "nerf-synthetic", target.parent
        if target.suffix == ".json":
            return _transforms_layout(target), target
    elif target.is_dir():
        if split_files(target):
            return "nerf-synthetic", target
        if (target / "transforms.json").is_file():
            return _transforms_layout(target / "transforms.json"), target / "transforms.json"
        if find_model(target) is not None:
            return "colmap", target
    elif not target.exists():
        raise CaptureError(str(target), "no such file or folder")
    accepted = "; ".join(f"{name}: {what}" for name, what in LAYOUTS.items())
    raise CaptureError(str(target), f"not a capture layout this reads. Accepted layouts: {accepted}")


def _transforms_layout(path: Path) -> str:
    """nerfstudio, unless the file is instant-ngp's (a field of view instead of focal lengths, or aabb_scale)."""
    data = load_json(path)
    if isinstance(data, dict) and ("camera_angle_x" in data or "aabb_scale" in data):
        return "instant-ngp"
    return "nerfstudio"


def read_capture(path: str | os.PathLike[str]) -> Capture:
    """Read a capture in any of :data:`LAYOUTS` (a folder, or a file of it); ``capture.layout`` says which."""
    layout, target = detect_layout(path)
    reader = {"nerfstudio": read_transforms, "nerf-synthetic": read_synthetic, "instant-ngp": read_instant_ngp,
              "colmap": read_colmap}[layout]
    return reader(target)


def capture_folder(capture: Capture) -> Path:
    """The folder frame ``file_path``s are relative to."""
    assert capture.source is not None, "a capture read from disk knows its source"
    return capture.source.parent if capture.source.is_file() else capture.source


__all__ = [
    "COLMAP_FILES", "DISTORTION_KEYS", "INTRINSIC_KEYS", "LAYOUTS", "Capture", "CaptureError", "CaptureFrame",
    "Intrinsics", "capture_folder", "capture_to_json", "detect_layout", "image_size", "load_json", "parse_capture",
    "png_layout", "read_capture",
    "read_colmap", "read_instant_ngp", "read_synthetic", "read_transforms", "write_json_atomic", "write_transforms",
]
