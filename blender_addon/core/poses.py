"""Camera poses: an orbit or a sphere of look-at cameras around a bounding box, and scale-free camera-to-world
matrices."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Matrix4 = NDArray[np.float64]


def look_at(eye: NDArray[np.float64], target: NDArray[np.float64], up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> Matrix4:
    """Camera-to-world matrix (Blender/OpenGL camera axes: looking down -z, y up) at ``eye`` looking at ``target``."""
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise ValueError("eye and target coincide")
    forward = forward / norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any perpendicular right vector will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, true_up, -forward, eye
    return matrix


def orbit_poses(
    bounds_min: NDArray[np.float64],
    bounds_max: NDArray[np.float64],
    count: int,
    *,
    elevation_deg: float = 25.0,
    distance_factor: float = 2.5,
    elevation_jitter_deg: float = 10.0,
) -> list[Matrix4]:
    """``count`` cameras evenly spaced in azimuth around the box, all looking at its centre.

    The distance is ``distance_factor`` times the box's bounding-sphere radius; elevations alternate by
    ``elevation_jitter_deg`` so the views are not all coplanar (better for reconstruction).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    low, high = np.asarray(bounds_min, dtype=np.float64), np.asarray(bounds_max, dtype=np.float64)
    center = (low + high) / 2
    radius = max(float(np.linalg.norm(high - low)) / 2, 1e-3)
    distance = distance_factor * radius
    poses = []
    for index in range(count):
        azimuth = 2 * math.pi * index / count
        elevation = math.radians(elevation_deg + (elevation_jitter_deg if index % 2 else -elevation_jitter_deg))
        offset = np.array([math.cos(azimuth) * math.cos(elevation), math.sin(azimuth) * math.cos(elevation), math.sin(elevation)])
        poses.append(look_at(center + distance * offset, center))
    return poses


def sphere_poses(
    bounds_min: NDArray[np.float64],
    bounds_max: NDArray[np.float64],
    count: int,
    *,
    seed: int = 0,
    upper_hemisphere: bool = True,
    distance_factor: float = 2.5,
    min_elevation_deg: float = 5.0,
) -> list[Matrix4]:
    """``count`` cameras on a sphere around the box (BlenderNeRF's sphere sampling), all looking at its centre.

    Directions are uniform on the sphere (or on the upper hemisphere, at least ``min_elevation_deg`` above the
    horizon: the views a scene standing on a floor can have), drawn from ``seed``: the same seed gives the same
    cameras. A Fibonacci spiral spreads them evenly, rotated by the seed, so few views still cover the sphere.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    low, high = np.asarray(bounds_min, dtype=np.float64), np.asarray(bounds_max, dtype=np.float64)
    center = (low + high) / 2
    distance = distance_factor * max(float(np.linalg.norm(high - low)) / 2, 1e-3)
    rng = np.random.default_rng(seed)
    lowest = math.sin(math.radians(min_elevation_deg)) if upper_hemisphere else -1.0
    offset = rng.uniform(0, 2 * math.pi)
    golden = math.pi * (3 - math.sqrt(5))
    poses = []
    for index in range(count):
        z = lowest + (1 - lowest) * (index + rng.uniform(0.25, 0.75)) / count  # uniform in z = uniform on the sphere
        ring = math.sqrt(max(0.0, 1 - z * z))
        azimuth = offset + golden * index
        direction = np.array([ring * math.cos(azimuth), ring * math.sin(azimuth), z])
        poses.append(look_at(center + distance * direction, center))
    return poses


def rigid(matrix: NDArray[np.float64]) -> Matrix4:
    """Drop scale from a camera's world matrix (Blender projects with the normalised matrix, too)."""
    result = np.array(matrix, dtype=np.float64)
    lengths = np.linalg.norm(result[:3, :3], axis=0)
    if np.any(lengths < 1e-12):
        raise ValueError("camera matrix has a zero scale axis")
    result[:3, :3] /= lengths
    result[3] = (0.0, 0.0, 0.0, 1.0)
    return result


def frustum_corners(fl_x: float, fl_y: float, cx: float, cy: float, w: int, h: int, depth: float) -> NDArray[np.float64]:
    """Camera-space corners (4 x 3) of the image rectangle at ``depth``: top-left, top-right, bottom-right,
    bottom-left. Used to place image planes that exactly cover the camera's view."""
    pixels = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    x = (pixels[:, 0] - cx) / fl_x * depth
    y = -(pixels[:, 1] - cy) / fl_y * depth
    return np.stack([x, y, np.full(4, -depth)], axis=1)
