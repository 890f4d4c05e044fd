"""Pinhole intrinsics of a Blender perspective camera, and the inverse (camera settings for given intrinsics).

Follows Blender's own view-plane computation (``BKE_camera_params_compute_viewplane``): the sensor fit picks the
image axis the sensor size spans (AUTO: the wider one, measured with the pixel aspect), pixel aspect stretches the
y focal length, and lens shift is measured in units of that fitted axis. Pixel coordinates follow nerfstudio:
origin at the top-left corner, pixel ``i`` covers ``[i, i + 1)``, so the image centre is ``(W/2, H/2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .protocol_link import capture

if TYPE_CHECKING:
    from capture import Intrinsics
else:
    Intrinsics = capture.Intrinsics  # nerfstudio pinhole intrinsics, as the shared capture reader defines them

SensorFit = Literal["AUTO", "HORIZONTAL", "VERTICAL"]


@dataclass(frozen=True)
class BlenderCamera:
    """The Blender settings that determine a perspective camera's projection."""

    lens: float
    """Focal length in millimetres (``camera.data.lens``)."""
    sensor_width: float
    """Millimetres (``camera.data.sensor_width``)."""
    sensor_height: float
    """Millimetres; only used with ``sensor_fit == "VERTICAL"`` (as in Blender)."""
    sensor_fit: SensorFit
    shift_x: float
    """Lens shift in units of the fitted image side (``camera.data.shift_x``)."""
    shift_y: float
    width: int
    """Rendered width in pixels (resolution_x scaled by resolution_percentage)."""
    height: int
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0


def render_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """Pixel size Blender renders for a resolution and a percentage (it truncates, as ``BKE_render_resolution``)."""
    return max(1, resolution_x * percentage // 100), max(1, resolution_y * percentage // 100)


def intrinsics_from_blender(camera: BlenderCamera) -> Intrinsics:
    """Intrinsics that project exactly as Blender renders (matches ``world_to_camera_view``)."""
    if camera.lens <= 0:
        raise ValueError(f"lens must be > 0, got {camera.lens}")
    if camera.width < 1 or camera.height < 1:
        raise ValueError(f"render size must be positive, got {camera.width}x{camera.height}")
    width, height = camera.width, camera.height
    # ycor: how much taller a pixel is than wide; Blender stretches the y axis of the view plane by it.
    ycor = camera.pixel_aspect_y / camera.pixel_aspect_x
    if camera.sensor_fit == "AUTO":
        horizontal = camera.pixel_aspect_x * width >= camera.pixel_aspect_y * height
    else:
        horizontal = camera.sensor_fit == "HORIZONTAL"
    sensor = camera.sensor_height if camera.sensor_fit == "VERTICAL" else camera.sensor_width
    viewfac = width if horizontal else ycor * height
    fl_x = camera.lens * viewfac / sensor
    return Intrinsics(
        fl_x=fl_x,
        fl_y=fl_x / ycor,
        cx=width / 2 - camera.shift_x * viewfac,
        cy=height / 2 + camera.shift_y * viewfac / ycor,
        w=width,
        h=height,
    )


def blender_from_intrinsics(intrinsics: Intrinsics, sensor_width: float = 36.0) -> BlenderCamera:
    """Blender settings (horizontal fit, given sensor width) that reproduce ``intrinsics`` exactly.

    Different ``fl_x``/``fl_y`` become a pixel aspect (Blender needs both aspect values >= 1).
    """
    if intrinsics.fl_x <= 0 or intrinsics.fl_y <= 0:
        raise ValueError(f"focal lengths must be > 0, got fl_x={intrinsics.fl_x}, fl_y={intrinsics.fl_y}")
    width, height = intrinsics.w, intrinsics.h
    ycor = intrinsics.fl_x / intrinsics.fl_y
    aspect_x, aspect_y = (1.0, ycor) if ycor >= 1 else (1.0 / ycor, 1.0)
    return BlenderCamera(
        lens=intrinsics.fl_x * sensor_width / width,
        sensor_width=sensor_width,
        sensor_height=sensor_width * height / width,
        sensor_fit="HORIZONTAL",
        shift_x=(width / 2 - intrinsics.cx) / width,
        shift_y=(intrinsics.cy - height / 2) * ycor / width,
        width=width,
        height=height,
        pixel_aspect_x=aspect_x,
        pixel_aspect_y=aspect_y,
    )


def project(intrinsics: Intrinsics, camera_to_world: list[list[float]], point: tuple[float, float, float]) -> tuple[float, float, float]:
    """Pixel ``(u, v)`` and depth of a world point (OpenGL camera axes: looking down -z, y up). For tests/checks."""
    # invert the rigid transform: p_cam = R^T (p - t)
    rotation = [row[:3] for row in camera_to_world[:3]]
    offset = [point[i] - camera_to_world[i][3] for i in range(3)]
    x, y, z = (sum(rotation[r][c] * offset[r] for r in range(3)) for c in range(3))
    depth = -z
    return (intrinsics.fl_x * x / depth + intrinsics.cx, intrinsics.cy - intrinsics.fl_y * y / depth, depth)
