"""The selected objects' surfaces as the backend bakes onto them (no bpy): triangle soups in world space with a UV
map, the checks that decide whether an object's own UV map can hold a bake, and the name results come back under.

A UV map can hold a bake when each point of the surface has a texel of its own: no islands outside the unit square
(a tiling map repeats the texture) and no overlapping faces (a mirrored or stacked layout gives two places one
colour). Otherwise the add-on makes a fresh Smart UV Project layout on its copy of the object.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

OVERLAP_RESOLUTION = 256
"""The overlap check samples the unit square at this many texel centres a side."""
MAX_OVERLAP = 0.02
"""More than this fraction of the covered texels lying in two faces or more: the map overlaps."""
TILE_MARGIN = 1e-3
"""UVs this far outside [0, 1] are a tiling map (a little is rounding)."""


def triangle_corners(positions: NDArray[np.float32], loop_vertices: NDArray[np.int32],
                     triangles: NDArray[np.int32], uvs: NDArray[np.float32],
                     matrix_world: NDArray[np.float64]) -> NDArray[np.float32]:
    """``float32 [T, 3, 5]`` (``x y z`` world, ``u v``) from a mesh's arrays as ``foreach_get`` reads them:
    vertex ``positions [V, 3]``, each loop's vertex ``[L]``, the loop triangles' loops ``[T, 3]`` and each loop's
    UV ``[L, 2]``, in object space, mapped to world space by ``matrix_world [4, 4]``."""
    corner_vertices = loop_vertices[triangles]  # [T, 3]
    local = positions[corner_vertices].astype(np.float64)
    world = local @ matrix_world[:3, :3].T + matrix_world[:3, 3]
    corners = np.concatenate([world, uvs[triangles].astype(np.float64)], axis=-1)
    return np.ascontiguousarray(corners, dtype=np.float32)


def uv_problem(uvs: NDArray[np.float32]) -> str | None:
    """Why ``[T, 3, 2]`` UV triangles cannot hold a bake (``"has no area"``, ``"tiles"``, ``"overlaps"``), or
    None when each face has texels of its own."""
    doubled = ((uvs[:, 1, 0] - uvs[:, 0, 0]) * (uvs[:, 2, 1] - uvs[:, 0, 1])
               - (uvs[:, 2, 0] - uvs[:, 0, 0]) * (uvs[:, 1, 1] - uvs[:, 0, 1]))
    if not len(uvs) or np.abs(doubled).sum() < 1e-12:
        return "has no area"
    if uvs.min() < -TILE_MARGIN or uvs.max() > 1 + TILE_MARGIN:
        return "tiles (UVs outside the 0-1 square)"
    covered = coverage_counts(uvs, OVERLAP_RESOLUTION)
    if (covered >= 2).sum() > MAX_OVERLAP * max(int((covered >= 1).sum()), 1):
        return "overlaps (faces share texels)"
    return None


def coverage_counts(uvs: NDArray[np.float32], resolution: int) -> NDArray[np.int32]:
    """``[resolution, resolution]``: how many UV triangles hold each texel centre strictly inside them."""
    counts = np.zeros(resolution * resolution, np.int32)
    pixels = uvs.astype(np.float64) * resolution
    low, high = pixels.min(axis=1), pixels.max(axis=1)
    x0 = np.clip(np.ceil(low[:, 0] - 0.5), 0, resolution).astype(np.int64)
    x1 = np.clip(np.floor(high[:, 0] - 0.5), -1, resolution - 1).astype(np.int64)
    y0 = np.clip(np.ceil(low[:, 1] - 0.5), 0, resolution).astype(np.int64)
    y1 = np.clip(np.floor(high[:, 1] - 0.5), -1, resolution - 1).astype(np.int64)
    width, height = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    sizes = width * height
    for chunk in np.array_split(np.arange(len(uvs)), max(1, int(sizes.sum()) // (1 << 21) + 1)):
        total = int(sizes[chunk].sum())
        if not total:
            continue
        tri = np.repeat(chunk, sizes[chunk])
        offset = np.arange(total) - np.repeat(np.cumsum(sizes[chunk]) - sizes[chunk], sizes[chunk])
        px, py = x0[tri] + offset % width[tri], y0[tri] + offset // width[tri]
        inside = np.ones(total, bool)
        for k in range(3):  # the texel centre on the same side of each edge as the opposite corner
            a, b, c = pixels[tri, k], pixels[tri, (k + 1) % 3], pixels[tri, (k + 2) % 3]
            edge = lambda p: (b[:, 0] - a[:, 0]) * (p[1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[0] - a[:, 0])  # noqa: E731
            inside &= edge((px + 0.5, py + 0.5)) * edge((c[:, 0], c[:, 1])) > 0
        np.add.at(counts, (py * resolution + px)[inside], 1)
    return counts.reshape(resolution, resolution)


def surface_name(object_name: str, corners: NDArray[np.float32]) -> str:
    """The name a surface travels and comes back under, and of the mesh the add-on keeps for it: the object's name
    and a digest of its triangles and UVs (so an edit of a changed object never lands on a stale copy)."""
    digest = hashlib.sha256(np.ascontiguousarray(corners).tobytes()).hexdigest()[:10]
    return f"in2n bake {object_name[:200]} {digest}"
