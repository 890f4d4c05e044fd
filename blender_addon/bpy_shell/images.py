"""Images the add-on shows: the live preview (behind the camera it was rendered from), the 2D instruction preview
grid (in an Image Editor), and snapshot thumbnails (panel icons).

The backend sends sRGB bytes, so these are byte images tagged sRGB (a float image is taken as linear and would show
them washed out); pixels go in with one ``foreach_set``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..core.pixels import to_blender_pixels

PREVIEW_IMAGE = "in2n preview"
GRID_IMAGE = "in2n instruction preview"
THUMBNAIL_PREFIX = "in2n snapshot "


def byte_image(name: str, width: int, height: int) -> bpy.types.Image:
    """The one Image datablock called ``name``, a byte sRGB image of ``width x height``."""
    image = bpy.data.images.get(name)
    if image is not None and (image.is_float or tuple(image.size) != (width, height)):
        bpy.data.images.remove(image)  # an older float preview, or another size: made again
        image = None
    if image is None:
        image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=False)
        image.colorspace_settings.name = "sRGB"
    return image


def fill(image: bpy.types.Image, pixels: Any) -> None:
    """Flat float RGBA (bottom row first) into ``image``; refreshes its icon."""
    image.pixels.foreach_set(pixels)
    image.update()
    if image.preview is not None:
        image.preview.reload()


def show_preview(step: int, width: int, height: int, pixels: Any, camera: bpy.types.Object | None,
                 behind_camera: bool) -> bpy.types.Image:
    """Update the live preview in place; show it behind ``camera`` (the camera it was rendered from) only."""
    image = byte_image(PREVIEW_IMAGE, width, height)
    fill(image, pixels)
    image["in2n_step"] = step
    for obj in bpy.data.objects:
        if obj.type == "CAMERA" and obj is not camera:
            remove_background(obj, image)
    if camera is not None and camera.type == "CAMERA" and behind_camera:
        backgrounds = camera.data.background_images
        if not any(bg.image == image for bg in backgrounds):
            backgrounds.new().image = image
        camera.data.show_background_images = True
    elif camera is not None:
        remove_background(camera, image)
    return image


def remove_background(camera: bpy.types.Object, image: bpy.types.Image | None = None) -> None:
    """Take the preview off ``camera``'s backgrounds (and hide them when nothing else is there)."""
    image = image or bpy.data.images.get(PREVIEW_IMAGE)
    if image is None or camera.type != "CAMERA":
        return
    backgrounds = camera.data.background_images
    for background in [bg for bg in backgrounds if bg.image == image]:
        backgrounds.remove(background)
    if not len(backgrounds):
        camera.data.show_background_images = False


def hide_preview_backgrounds() -> None:
    """The job ended: the live preview leaves every camera."""
    for obj in bpy.data.objects:
        remove_background(obj)


def show_grid(grid: np.ndarray, columns: list[float], rows: list[float]) -> bpy.types.Image:
    """The labelled 2D preview grid in its image, shown in every Image Editor of the screen."""
    height, width = grid.shape[:2]
    image = byte_image(GRID_IMAGE, width, height)
    fill(image, to_blender_pixels(grid))
    image["in2n_columns"], image["in2n_rows"] = list(columns), list(rows)
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
    return image


def thumbnail(step: int, path: Path) -> bpy.types.Image:
    """A snapshot's first render as a panel icon (replaced when the file changes)."""
    name = f"{THUMBNAIL_PREFIX}{step}"
    old = bpy.data.images.get(name)
    if old is not None:
        bpy.data.images.remove(old)
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    image.preview_ensure()
    return image


def as_array(name: str = PREVIEW_IMAGE) -> np.ndarray | None:
    """An image's pixels as Blender holds them (flat float RGBA, bottom row first), or None."""
    image = bpy.data.images.get(name)
    if image is None:
        return None
    pixels = np.empty(len(image.pixels), dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return pixels
