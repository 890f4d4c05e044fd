"""Tiny nerfstudio-format scenes for tests: coloured spheres ray-cast analytically, 8-12 views at 32-64 px.

The scene deliberately lives far from the origin and at a non-unit scale (``center``, ``radius``), so that anything
that forgets to undo nerfstudio's dataparser transform (which recentres and rescales poses to about [-1, 1]) lands in
the wrong place and a test can tell.

Cameras follow nerfstudio's (OpenGL / Blender) convention: ``transform_matrix`` is camera-to-world, the camera looks
down its -Z axis with +Y up, and pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    """Centre relative to the scene centre, in units of the scene radius."""
    radius: float
    """Radius in units of the scene radius."""
    color: tuple[float, float, float]
    """Albedo in [0, 1]."""


DEFAULT_SPHERES = (
    Sphere((0.0, 0.0, 0.0), 0.30, (0.90, 0.15, 0.10)),
    Sphere((0.35, 0.10, 0.05), 0.15, (0.10, 0.70, 0.20)),
    Sphere((-0.30, -0.15, 0.10), 0.18, (0.15, 0.25, 0.90)),
)


@dataclass
class TinyScene:
    """What a generated scene contains, in its own (input) coordinate frame."""

    path: Path
    """Folder holding ``transforms.json`` and ``images/``."""
    center: np.ndarray
    """Scene centre in the input frame."""
    scale: float
    """World units per scene-radius unit."""
    spheres: tuple[Sphere, ...]
    c2w: np.ndarray
    """``N 4 4`` camera-to-world matrices, as written to ``transforms.json``."""
    width: int
    height: int
    focal: float
    images: list[np.ndarray] = field(default_factory=list)
    """``H W 3`` uint8 images, in frame order."""

    def object_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of the coloured objects in the input frame."""
        lows = [self.center + self.scale * (np.array(s.center) - s.radius) for s in self.spheres]
        highs = [self.center + self.scale * (np.array(s.center) + s.radius) for s in self.spheres]
        return np.min(lows, axis=0), np.max(highs, axis=0)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """OpenGL camera-to-world matrix for a camera at ``eye`` looking at ``target``."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    true_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye
    return c2w


def render_spheres(
    c2w: np.ndarray, width: int, height: int, focal: float, center: np.ndarray, scale: float,
    spheres: tuple[Sphere, ...], background: tuple[float, float, float] = (0.95, 0.95, 0.92),
) -> np.ndarray:
    """Ray-cast ``spheres`` with simple diffuse shading; returns ``H W 3`` uint8."""
    return ray_cast(c2w, width, height, focal, center, scale, spheres, background)[0]


def ray_cast(
    c2w: np.ndarray, width: int, height: int, focal: float, center: np.ndarray, scale: float,
    spheres: tuple[Sphere, ...], background: tuple[float, float, float] = (0.95, 0.95, 0.92),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image H W 3 uint8, z-depth H W float (0: background), sphere index H W int (-1: background))``."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dirs_cam = np.stack([(u - width / 2) / focal, -(v - height / 2) / focal, -np.ones_like(u)], axis=-1)
    dirs = dirs_cam @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = c2w[:3, 3]
    image = np.broadcast_to(np.array(background), dirs.shape).copy()
    nearest = np.full(dirs.shape[:2], np.inf)
    which = np.full(dirs.shape[:2], -1)
    forward = -c2w[:3, 2]
    light = np.array([0.4, -0.3, 0.85])
    light /= np.linalg.norm(light)
    for index, sphere in enumerate(spheres):
        sphere_center = center + scale * np.array(sphere.center)
        offset = origin - sphere_center
        b = dirs @ offset
        c = offset @ offset - (scale * sphere.radius) ** 2
        disc = b * b - c
        hit = disc > 0
        depth = np.where(hit, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
        closer = hit & (depth > 0) & (depth < nearest)
        points = origin + dirs * np.where(closer, depth, 0.0)[..., None]  # finite everywhere: no NaN warnings
        normals = (points - sphere_center) / (scale * sphere.radius)
        shade = 0.35 + 0.65 * np.clip(normals @ light, 0, 1)
        image[closer] = (np.array(sphere.color) * shade[..., None])[closer]
        nearest[closer] = depth[closer]
        which[closer] = index
    z_depth = np.where(np.isfinite(nearest), np.where(np.isfinite(nearest), nearest, 0.0) * (dirs @ forward), 0.0)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), z_depth, which


def make_tiny_scene(
    path: Path,
    *,
    num_views: int = 10,
    size: int = 32,
    center: tuple[float, float, float] = (4.0, -2.0, 1.0),
    scale: float = 3.0,
    camera_distance: float = 1.3,
    spheres: tuple[Sphere, ...] = DEFAULT_SPHERES,
    target_spheres: tuple[Sphere, ...] | None = None,
    depth: bool = False,
    edit_mask_of: int | None = None,
) -> TinyScene:
    """Write a nerfstudio scene (``transforms.json`` + ``images/frame_XXXXX.png``) to ``path`` and describe it.

    ``target_spheres``: also render the scene as these spheres into ``targets/frame_XXXXX.png``, named by each
    frame's ``target_file_path`` (the simulated editor's ground-truth edit). ``depth``: each view's z-depth as a
    16-bit millimetre PNG (``depth_file_path``, as nerfstudio reads them). ``edit_mask_of``: the pixels of that
    sphere as each view's edit mask (``edit_mask_path``, 255 inside)."""
    from PIL import Image  # the backend environment's; the rest of this module also serves Blender's tests

    path = Path(path)
    (path / "images").mkdir(parents=True, exist_ok=True)
    center_array = np.array(center, dtype=float)
    focal = 1.1 * size
    frames, matrices, images = [], [], []
    for index in range(num_views):
        azimuth = 2 * np.pi * index / num_views
        elevation = np.deg2rad(20 + 25 * (index % 3) / 2)
        direction = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
        c2w = look_at(center_array + scale * camera_distance * direction, center_array)
        image, z_depth, which = ray_cast(c2w, size, size, focal, center_array, scale, spheres)
        name = f"images/frame_{index:05d}.png"
        Image.fromarray(image).save(path / name)
        frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
        if depth:
            (path / "depth").mkdir(exist_ok=True)
            Image.fromarray(np.rint(z_depth * 1000).astype(np.uint16)).save(path / name.replace("images/", "depth/"))
            frames[-1]["depth_file_path"] = name.replace("images/", "depth/")
        if edit_mask_of is not None:
            (path / "edit_masks").mkdir(exist_ok=True)
            mask = np.where(which == edit_mask_of, 255, 0).astype(np.uint8)
            Image.fromarray(mask).save(path / name.replace("images/", "edit_masks/"))
            frames[-1]["edit_mask_path"] = name.replace("images/", "edit_masks/")
        if target_spheres is not None:
            (path / "targets").mkdir(exist_ok=True)
            target = render_spheres(c2w, size, size, focal, center_array, scale, target_spheres)
            Image.fromarray(target).save(path / name.replace("images/", "targets/"))
            frames[-1]["target_file_path"] = name.replace("images/", "targets/")
        matrices.append(c2w)
        images.append(image)
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
        "frames": frames,
    }
    (path / "transforms.json").write_text(json.dumps(transforms, indent=2))
    return TinyScene(path, center_array, scale, spheres, np.stack(matrices), size, size, focal, images)
