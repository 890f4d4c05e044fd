"""Bake the edited NeRF's appearance onto the user's own surfaces: one texture per surface, in its UV map.

For a scene made in Blender the user owns the exact geometry, and InstructPix2Pix's edits are mostly appearance, so
the result the user keeps is their own object with the edit as its texture. For each texel of a surface's UV map:

1. its point on the surface (the UV triangle it lies in, barycentric interpolation of the corners) and normal;
2. the training cameras that see that point: in front of the camera, inside its image, and not hidden behind
   anything (the view's depth image from Blender when the scene has one, else a z-buffer of the uploaded surfaces);
3. of those, the one that sees it most head-on (largest ``|cos|`` between normal and viewing ray), and the colour the
   NeRF renders at the pixel whose ray meets the surface there (bilinear in that view's render);
4. texels no camera sees (and the gutter around UV islands, which texture filtering reads) take the colour of the
   nearest texel that was seen.

The NeRF's renders at the training views are what Iterative Dataset Update made 3D-consistent, and a pixel's colour
does not depend on how well the NeRF got the geometry: even a NeRF too transparent to export geometry bakes.
Everything is numpy, in the nerfstudio frame of the cameras (points and depths mapped into it). No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from backend.pixels import to_uint8
from backend.surfaces import Surface

MIN_RESOLUTION, MAX_RESOLUTION = 64, 8192
"""Bounds of a baked texture's side in pixels."""
RASTER_BATCH = 1 << 22
"""Most (triangle, pixel) candidate pairs the rasteriser holds at once."""


class BakeError(RuntimeError):
    """A surface cannot be baked (e.g. no training camera sees it); the message names the object."""


@dataclass(frozen=True)
class BakeView:
    """A training camera in the frame the points are given in (OpenGL axes, pixel origin at the top-left corner, pixel
    ``(row, col)``'s centre at ``(col + 0.5, row + 0.5)`` as nerfstudio's rays)."""

    c2w: np.ndarray
    """``3 4`` (or ``4 4``) camera-to-world."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    depth: np.ndarray | None = None
    """``[h, w]`` z-depth of the nearest surface of the whole scene, in the same units (0: nothing hit), or None."""

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, z)`` of ``[N, 3]`` points: continuous pixel coordinates and the depth along the viewing axis."""
        rotation, origin = self.c2w[:3, :3], self.c2w[:3, 3]
        local = (points - origin) @ rotation  # R^T (p - t)
        z = -local[:, 2]
        safe = np.where(z > 1e-9, z, 1e-9)
        return self.cx + self.fx * local[:, 0] / safe, self.cy - self.fy * local[:, 1] / safe, z

    @property
    def origin(self) -> np.ndarray:
        return np.asarray(self.c2w[:3, 3])


@dataclass
class BakedTexture:
    surface: Surface
    image: np.ndarray
    """``uint8 [R, R, 3]``, row 0 = the top of the texture (UV ``v = 1``), as image files and Blender store it."""
    coverage: float
    """Fraction of the surface's texels that a training camera sees (the rest are filled from their neighbours)."""
    views_used: int
    """How many training views the colours came from."""


def rasterize(triangles: np.ndarray, width: int, height: int, depth: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of ``[T, 3, 2]`` triangles (continuous pixel coordinates) covers each pixel centre.

    Returns ``(index [h, w]`` (-1: none), ``barycentric [h, w, 3]``, ``z [h, w]`` (inf: none)). With ``depth``
    (``[T, 3]`` per-corner depth, > 0) the nearest triangle wins and ``z`` is its perspective-correct depth; without
    it, where triangles overlap one of them wins."""
    index = np.full((height, width), -1, np.int64)
    barycentric = np.zeros((height, width, 3), np.float32)
    zbuffer = np.full((height, width), np.inf)
    low, high = triangles.min(axis=1), triangles.max(axis=1)
    x0 = np.clip(np.ceil(low[:, 0] - 0.5), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(high[:, 0] - 0.5), -1, width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(low[:, 1] - 0.5), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(high[:, 1] - 0.5), -1, height - 1).astype(np.int64)
    spans_x, spans_y = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    counts = spans_x * spans_y
    start = 0
    while start < len(triangles):
        stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]), RASTER_BATCH)))
        chosen = np.arange(start, min(stop, len(triangles)))
        start = int(chosen[-1]) + 1
        total = int(counts[chosen].sum())
        if total == 0:
            continue
        tri = np.repeat(chosen, counts[chosen])
        offset = np.arange(total) - np.repeat(np.cumsum(counts[chosen]) - counts[chosen], counts[chosen])
        px = x0[tri] + offset % spans_x[tri]
        py = y0[tri] + offset // spans_x[tri]
        a, b, c = (triangles[tri, k].astype(np.float64) for k in range(3))
        point = np.stack([px + 0.5, py + 0.5], axis=-1)
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        safe = np.where(area != 0, area, 1.0)
        l1 = ((point[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (point[:, 1] - a[:, 1])) / safe
        l2 = ((b[:, 0] - a[:, 0]) * (point[:, 1] - a[:, 1]) - (point[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])) / safe
        weights = np.stack([1 - l1 - l2, l1, l2], axis=-1)
        inside = (area != 0) & (weights >= -1e-6).all(axis=-1)
        tri, px, py, weights = tri[inside], px[inside], py[inside], weights[inside]
        if depth is None:
            index[py, px] = tri
            barycentric[py, px] = weights
            continue
        z = 1.0 / (weights / depth[tri]).sum(axis=-1)  # 1/z interpolates linearly on the screen
        np.minimum.at(zbuffer, (py, px), z)
        nearest = z <= zbuffer[py, px]
        index[py[nearest], px[nearest]] = tri[nearest]
        barycentric[py[nearest], px[nearest]] = weights[nearest]
    return index, barycentric, zbuffer


def surface_texels(surface: Surface, resolution: int
                   ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """The texels whose centres lie in a UV triangle: ``((rows, cols, triangle), points [N, 3], normals [N, 3])``,
    each texel's point on the surface (input frame) and its triangle's unit normal."""
    uv = surface.uvs.astype(np.float64)
    pixels = np.stack([uv[..., 0] * resolution, (1.0 - uv[..., 1]) * resolution], axis=-1)
    index, barycentric, _ = rasterize(pixels, resolution, resolution)
    rows, cols = np.nonzero(index >= 0)
    tri = index[rows, cols]
    corners = surface.positions.astype(np.float64)[tri]
    points = (barycentric[rows, cols, :, None] * corners).sum(axis=1)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    return (rows, cols, tri), points, normals


def occluder_depth(view: BakeView, surfaces: Sequence[Surface], to_frame: Callable[[np.ndarray], np.ndarray]
                   ) -> np.ndarray:
    """The view's depth of the nearest surface: Blender's depth image when the scene has one, else a z-buffer of the
    uploaded surfaces (then only they can hide each other)."""
    if view.depth is not None:
        return np.where(view.depth > 0, view.depth, np.inf)
    zbuffer = np.full((view.height, view.width), np.inf)
    for surface in surfaces:
        corners = to_frame(surface.positions.reshape(-1, 3).astype(np.float64))
        x, y, z = view.project(corners)
        triangles = np.stack([x, y], axis=-1).reshape(-1, 3, 2)
        depth = z.reshape(-1, 3)
        front = (depth > 1e-6).all(axis=1)  # triangles crossing the camera plane are left out
        if front.any():
            zbuffer = np.minimum(zbuffer, rasterize(triangles[front], view.width, view.height, depth[front])[2])
    return zbuffer


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image [h, w, c]`` at continuous pixel coordinates (pixel centres at ``+0.5``), clamped at the borders."""
    height, width = image.shape[:2]
    fx, fy = np.clip(x - 0.5, 0, width - 1), np.clip(y - 0.5, 0, height - 1)
    c0, r0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    c1, r1 = np.minimum(c0 + 1, width - 1), np.minimum(r0 + 1, height - 1)
    wx, wy = (fx - c0)[:, None], (fy - r0)[:, None]
    top = image[r0, c0] * (1 - wx) + image[r0, c1] * wx
    bottom = image[r1, c0] * (1 - wx) + image[r1, c1] * wx
    return top * (1 - wy) + bottom * wy


def visible_in(view: BakeView, occluders: np.ndarray, points: np.ndarray, normals: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(visible, head_on, (x, y))`` of points seen by ``view``: ``head_on`` is ``|cos|`` of the angle between the
    normal and the viewing ray. A point is hidden when the nearest surface at its pixel is in front of it by more
    than a depth tolerance (1 % of the distance plus two pixels' footprint), so a surface is never hidden by itself."""
    x, y, z = view.project(points)
    inside = (z > 1e-6) & (x >= 0) & (x < view.width) & (y >= 0) & (y < view.height)
    rows = np.clip(y.astype(np.int64), 0, view.height - 1)
    cols = np.clip(x.astype(np.int64), 0, view.width - 1)
    tolerance = 0.01 * z + 2.0 * z / max(view.fx, 1e-9)
    visible = inside & (z <= occluders[rows, cols] + tolerance)
    rays = points - view.origin
    rays /= np.maximum(np.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)
    head_on = np.abs((rays * normals).sum(axis=-1))
    return visible, head_on, np.stack([x, y], axis=-1)


def bake_surfaces(surfaces: Sequence[Surface], views: Sequence[BakeView], render: Callable[[int], np.ndarray],
                  resolution: int, to_frame: Callable[[np.ndarray], np.ndarray] = lambda points: points,
                  should_stop: Callable[[], bool] = lambda: False,
                  on_progress: Callable[[int, int], None] = lambda done, total: None) -> list[BakedTexture]:
    """One texture per surface. ``render(view)`` is the NeRF's ``[h, w, 3]`` float render of ``views[view]``
    (called once per view that some texel needs); ``to_frame`` maps input-frame points into the views' frame.
    ``on_progress(done, total)`` counts views projected over all surfaces; ``should_stop()`` ends early (None)."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise BakeError(f"bake resolution {resolution} is outside {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels")
    occluders = [occluder_depth(view, surfaces, to_frame) for view in views]
    renders: dict[int, np.ndarray] = {}
    baked, total, done = [], len(surfaces) * len(views), 0
    for surface in surfaces:
        (rows, cols, _), points_in, normals_in = surface_texels(surface, resolution)
        if not len(rows):
            raise BakeError(f"the UV map of object {surface.label!r} covers no texel at {resolution} px: use a "
                            "higher bake resolution or a UV map with larger islands")
        points = to_frame(points_in)
        normals = to_frame(points_in + normals_in) - points  # directions: a rigid map plus a uniform scale
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
        best = np.full(len(points), -1.0)
        chosen = np.full(len(points), -1, np.int64)
        where = np.zeros((len(points), 2))
        for number, (view, occluder) in enumerate(zip(views, occluders)):
            if should_stop():
                return []
            visible, head_on, pixels = visible_in(view, occluder, points, normals)
            better = visible & (head_on > best)
            best[better], chosen[better], where[better] = head_on[better], number, pixels[better]
            done += 1
            on_progress(done, total)
        seen = chosen >= 0
        if not seen.any():
            raise BakeError(f"no training camera sees object {surface.label!r}: add cameras that look at it")
        colours = np.zeros((len(points), 3))
        for number in np.unique(chosen[seen]):
            if number not in renders:
                renders[number] = np.asarray(render(int(number)), dtype=np.float64)
            pick = chosen == number
            colours[pick] = bilinear(renders[number], where[pick, 0], where[pick, 1])
        image = np.zeros((resolution, resolution, 3))
        known = np.zeros((resolution, resolution), bool)
        image[rows[seen], cols[seen]] = colours[seen]
        known[rows[seen], cols[seen]] = True
        nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
        image = image[nearest[0], nearest[1]]
        texture = to_uint8(image)
        baked.append(BakedTexture(surface, texture, float(seen.mean()), int(len(np.unique(chosen[seen])))))
    return baked
