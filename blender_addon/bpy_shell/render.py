"""Training views: render cameras with the scene's own engine, or read a capture's photos, as uint8 arrays."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import bpy
import numpy as np

from ..core.pixels import from_blender_pixels
from ..core.protocol_link import protocol
from . import cameras as cams

m = protocol.messages


def load_image_array(path: Path) -> np.ndarray:
    """``H W 3`` uint8 (row 0 = top) of an image file, read through Blender (any format it knows)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        if width == 0 or height == 0:
            raise OSError(f"cannot read image {path}")
        pixels = np.empty(width * height * image.channels, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        return from_blender_pixels(pixels, width, height, image.channels)
    finally:
        bpy.data.images.remove(image)


@contextlib.contextmanager
def render_settings(scene: bpy.types.Scene, width: int, height: int, samples: int, folder: Path) -> Iterator[None]:
    """Temporarily render at ``width x height`` 100%, PNG RGB 8-bit, into ``folder``; restores everything after."""
    render, previous_camera = scene.render, scene.camera
    saved = (render.resolution_x, render.resolution_y, render.resolution_percentage, render.filepath,
             render.image_settings.file_format, render.image_settings.color_mode, render.image_settings.color_depth)
    cycles_samples = scene.cycles.samples if scene.render.engine == "CYCLES" else None
    try:
        render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
        render.image_settings.file_format, render.image_settings.color_mode = "PNG", "RGB"
        render.image_settings.color_depth = "8"
        if cycles_samples is not None:
            scene.cycles.samples = samples
        folder.mkdir(parents=True, exist_ok=True)
        yield
    finally:
        (render.resolution_x, render.resolution_y, render.resolution_percentage, render.filepath,
         render.image_settings.file_format, render.image_settings.color_mode, render.image_settings.color_depth) = saved
        if cycles_samples is not None:
            scene.cycles.samples = cycles_samples
        scene.camera = previous_camera


def render_views(scene: bpy.types.Scene, camera_objects: list[bpy.types.Object], width: int, height: int,
                 samples: int, folder: Path, progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[list[m.Camera], list[np.ndarray]]:
    """Render every camera (write_still: ``Render Result`` has no pixels in background mode) and read it back."""
    cameras, images = [], []
    with render_settings(scene, width, height, samples, folder):
        for index, obj in enumerate(camera_objects):
            scene.camera = obj
            target = (folder / f"frame_{index:05d}.png").resolve()
            scene.render.filepath = str(target)
            bpy.ops.render.render(write_still=True, scene=scene.name)
            images.append(load_image_array(target))
            cameras.append(protocol_camera(obj, scene, (width, height)))
            if progress is not None:
                progress(index + 1, len(camera_objects))
    return cameras, images


def capture_views(scene: bpy.types.Scene, camera_objects: list[bpy.types.Object], capture_folder: Path,
                  ) -> tuple[list[m.Camera], list[np.ndarray]]:
    """The photos of imported capture cameras, with their own intrinsics."""
    cameras, images = [], []
    for obj in camera_objects:
        path = cams.image_path_of(obj, capture_folder)
        if path is None or not path.is_file():
            raise cams.CameraError(f"camera '{obj.name}' has no photo (expected {path}); import the capture again")
        image = load_image_array(path)
        camera = protocol_camera(obj, scene, None)
        if (camera.h, camera.w) != image.shape[:2]:
            raise cams.CameraError(f"photo of '{obj.name}' is {image.shape[1]}x{image.shape[0]}, camera says "
                                   f"{camera.w}x{camera.h}")
        cameras.append(camera)
        images.append(image)
    return cameras, images


def target_images(camera_objects: list[bpy.types.Object], sizes: list[tuple[int, int]], capture_folder: Path | None,
                  ) -> list[protocol.AuxUpload]:
    """The simulated-editor target image of every view that names one (:func:`cameras.target_path_of`), checked
    against the view's ``(width, height)``; views without one are left out."""
    uploads = []
    for index, (obj, (width, height)) in enumerate(zip(camera_objects, sizes)):
        path = cams.target_path_of(obj, capture_folder)
        if path is None:
            continue
        if not path.is_file():
            raise cams.CameraError(f"camera '{obj.name}': target image {path} not found")
        image = load_image_array(path)
        if image.shape[:2] != (height, width):
            raise cams.CameraError(f"camera '{obj.name}': target image {path.name} is {image.shape[1]}x"
                                   f"{image.shape[0]}, the view is {width}x{height}")
        uploads.append(protocol.AuxUpload(index, "target", protocol.RawImage.from_array(image)))
    return uploads


def protocol_camera(obj: bpy.types.Object, scene: bpy.types.Scene, size: tuple[int, int] | None) -> m.Camera:
    k = cams.camera_intrinsics(obj, scene, size)
    return m.Camera(fl_x=k.fl_x, fl_y=k.fl_y, cx=k.cx, cy=k.cy, w=k.w, h=k.h,
                    transform_matrix=cams.camera_to_world(obj), name=obj.name)
