"""Training views as the upload sends them: cameras with their intrinsics, and image FILES (renders the add-on makes
with :mod:`.render_session`, or a capture's photos), checked by their headers only. The worker thread reads and
uploads the files as they are; nothing is decoded on Blender's main thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bpy

from ..core import worker_api as api
from ..core.protocol_link import capture as capture_format
from ..core.protocol_link import protocol
from . import aux_pass
from . import cameras as cams
from .render_session import Shot

m = protocol.messages


def image_size(path: Path, what: str) -> tuple[int, int]:
    """``(width, height)`` from a PNG / JPEG header; :class:`cams.CameraError` naming ``what`` otherwise."""
    try:
        return capture_format.image_size(path)
    except capture_format.CaptureError as exc:
        raise cams.CameraError(f"{what}: {exc.problem} ({path})") from None


def render_shots(camera_objects: list[bpy.types.Object], folder: Path) -> list[Shot]:
    """One PNG render per camera, named by its upload index (``frame_00003.png``)."""
    return [Shot(obj, (folder / f"frame_{index:05d}.png").resolve()) for index, obj in enumerate(camera_objects)]


def knowledge_shot(scene: bpy.types.Scene, color: Shot, selected: list[bpy.types.Object],
                   collect: Callable[[Path], None]) -> Shot:
    """The depth and mask pass of ``color``'s camera (``frame_00003.knowledge.exr``)."""
    return Shot(color.camera, color.path.with_suffix(".knowledge.exr"), prepare=aux_pass.prepare(scene, selected),
                image_format=aux_pass.EXR_FORMAT, collect=collect)


def rendered_views(scene: bpy.types.Scene, shots: list[Shot], size: tuple[int, int]) -> tuple[list[m.Camera], list[Path]]:
    """Cameras (at the render size) and files of a finished render session."""
    return [protocol_camera(shot.camera, scene, size) for shot in shots], [shot.path for shot in shots]


def capture_photos(scene: bpy.types.Scene, camera_objects: list[bpy.types.Object], capture_folder: Path,
                   ) -> tuple[list[m.Camera], list[Path]]:
    """The photos of imported capture cameras (their files, checked against each camera's own intrinsics)."""
    cameras, paths = [], []
    for obj in camera_objects:
        path = cams.image_path_of(obj, capture_folder)
        if path is None or not path.is_file():
            raise cams.CameraError(f"camera '{obj.name}' has no photo (expected {path}); import the capture again")
        camera = protocol_camera(obj, scene, None)
        width, height = image_size(path, f"photo of '{obj.name}'")
        if (camera.w, camera.h) != (width, height):
            raise cams.CameraError(f"photo of '{obj.name}' is {width}x{height}, camera says {camera.w}x{camera.h}")
        cameras.append(camera)
        paths.append(path)
    return cameras, paths


def target_files(camera_objects: list[bpy.types.Object], sizes: list[tuple[int, int]], capture_folder: Path | None,
                 ) -> list[api.AuxFile]:
    """The simulated-editor target image of every view that names one (:func:`cameras.target_path_of`), checked
    against the view's ``(width, height)`` by its header; views without one are left out."""
    uploads = []
    for index, (obj, (width, height)) in enumerate(zip(camera_objects, sizes)):
        path = cams.target_path_of(obj, capture_folder)
        if path is None:
            continue
        if not path.is_file():
            raise cams.CameraError(f"camera '{obj.name}': target image {path} not found")
        actual = image_size(path, f"camera '{obj.name}': target image")
        if actual != (width, height):
            raise cams.CameraError(f"camera '{obj.name}': target image {path.name} is {actual[0]}x{actual[1]}, the "
                                   f"view is {width}x{height}")
        uploads.append(api.AuxFile(index, "target", path))
    return uploads


def protocol_camera(obj: bpy.types.Object, scene: bpy.types.Scene, size: tuple[int, int] | None) -> m.Camera:
    k = cams.camera_intrinsics(obj, scene, size)
    return m.Camera(fl_x=k.fl_x, fl_y=k.fl_y, cx=k.cx, cy=k.cy, w=k.w, h=k.h,
                    transform_matrix=cams.camera_to_world(obj), name=obj.name)
