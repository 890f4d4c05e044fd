"""The baker against scenes whose true colours are known: an analytic sphere rendered by ray casting, with a colour
that is a function of the surface point, seen by cameras around it."""

from __future__ import annotations

import numpy as np
import pytest

from backend.bake import BakeError, BakeView, bake_surfaces, rasterize
from backend.surfaces import Surface, SurfaceError, checked_surface, read_surfaces, write_surfaces


def uv_sphere(radius: float = 1.0, rings: int = 24, segments: int = 48, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """``float32 [T, 3, 5]`` triangles of a UV sphere with its lat-long UV map (no overlaps)."""
    corners = []
    for i in range(rings):
        for j in range(segments):
            quad = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            verts = []
            for r, s in quad:
                theta, phi = np.pi * r / rings, 2 * np.pi * s / segments
                point = radius * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
                verts.append([*(point + center), s / segments, 1 - r / rings])
            corners += [[verts[0], verts[1], verts[2]], [verts[0], verts[2], verts[3]]]
    return np.asarray(corners, np.float32)


def colour_of(points: np.ndarray) -> np.ndarray:
    return np.clip((points + 1.2) / 2.4, 0, 1)


def look_at(eye: np.ndarray, target=np.zeros(3)) -> np.ndarray:
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0, 0, 1.0])
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


def ray_cast_render(view: BakeView, center=np.zeros(3), radius=1.0, background=(0.2, 0.2, 0.2)):
    """Exact render and z-depth of the sphere (pixel centres at +0.5, as nerfstudio's rays)."""
    cols, rows = np.meshgrid(np.arange(view.width) + 0.5, np.arange(view.height) + 0.5)
    local = np.stack([(cols - view.cx) / view.fx, -(rows - view.cy) / view.fy, -np.ones_like(cols)], -1)
    directions = local @ view.c2w[:3, :3].T
    origin = view.c2w[:3, 3]
    oc = origin - center
    a = (directions**2).sum(-1)
    b = 2 * (directions * oc).sum(-1)
    c = (oc**2).sum() - radius**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    hit = disc > 0
    points = origin + directions * t[..., None]
    image = np.where(hit[..., None], colour_of(points), background)
    depth = np.where(hit, t, 0.0)  # local z = -1 per unit of t
    return image, depth


def orbit_views(count: int, distance: float, size: int = 64, with_depth: bool = True) -> list[BakeView]:
    views = []
    for k in range(count):
        angle = 2 * np.pi * k / count
        elevation = 0.5 if k % 2 else -0.3
        eye = distance * np.array([np.cos(angle), np.sin(angle), elevation])
        view = BakeView(look_at(eye), fx=size, fy=size, cx=size / 2, cy=size / 2, width=size, height=size)
        if with_depth:
            view = BakeView(**{**view.__dict__, "depth": ray_cast_render(view)[1]})
        views.append(view)
    return views


def texel_truth(surface: Surface, resolution: int):
    from backend.bake import surface_texels

    (rows, cols, _), points, _ = surface_texels(surface, resolution)
    # the true colour at the exact sphere point (the mesh is a polygonal approximation)
    return rows, cols, colour_of(points / np.linalg.norm(points, axis=-1, keepdims=True))


@pytest.mark.parametrize("with_depth", [True, False])
def test_bake_recovers_the_colours_the_views_show(with_depth):
    surface = checked_surface("sphere-mesh", "Sphere", uv_sphere(), "meshes[0]")
    views = orbit_views(8, 4.0, with_depth=with_depth)
    rendered = [ray_cast_render(view)[0] for view in views]
    [baked] = bake_surfaces([surface], views, lambda index: rendered[index], 128)
    rows, cols, truth = texel_truth(surface, 128)
    error = np.abs(baked.image[rows, cols] / 255.0 - truth).mean(axis=-1)
    assert baked.image.shape == (128, 128, 3) and baked.image.dtype == np.uint8
    assert np.median(error) < 0.02, np.median(error)
    assert np.quantile(error, 0.9) < 0.06
    assert baked.coverage > 0.9
    # the background (0.2 grey) of the renders must not leak in where the surface was seen
    assert (error[error > 0.15]).size < 0.02 * error.size


def test_occluded_texels_take_colours_from_cameras_that_see_them():
    """A second sphere hides part of the first from some cameras: with Blender's depth those views are not used
    there (a z-buffer of the uploaded surfaces does the same when both are uploaded)."""
    first = checked_surface("a", "A", uv_sphere(), "meshes[0]")
    views = orbit_views(6, 4.0, with_depth=False)
    blocker_center = np.asarray(views[0].origin) * 0.55  # between camera 0 and the sphere
    blocker = checked_surface("b", "B", uv_sphere(0.5, center=tuple(blocker_center)), "meshes[1]")
    renders = []
    for view in views:
        image, depth = ray_cast_render(view)
        image_b, depth_b = ray_cast_render(view, center=blocker_center, radius=0.5)
        in_front = (depth_b > 0) & ((depth == 0) | (depth_b < depth))
        renders.append(np.where(in_front[..., None], [1.0, 0.0, 1.0], image))  # the blocker is magenta
    [baked_a, _] = bake_surfaces([first, blocker], views, lambda index: renders[index], 96)
    rows, cols, truth = texel_truth(first, 96)
    error = np.abs(baked_a.image[rows, cols] / 255.0 - truth).mean(axis=-1)
    assert np.mean(error > 0.3) < 0.005  # no magenta on the first sphere
    # without the blocker among the surfaces, camera 0 (the most head-on there) paints magenta onto it
    [unaware] = bake_surfaces([first], views, lambda index: renders[index], 96)
    error_unaware = np.abs(unaware.image[rows, cols] / 255.0 - truth).mean(axis=-1)
    assert np.mean(error_unaware > 0.3) > 0.1


def test_a_surface_no_camera_sees_is_refused_by_name():
    surface = checked_surface("hidden", "Suzanne", uv_sphere(center=(0, 0, 50)), "meshes[0]")
    views = orbit_views(4, 4.0, with_depth=False)
    with pytest.raises(BakeError, match="no training camera sees object 'Suzanne'"):
        bake_surfaces([surface], views, lambda index: np.zeros((64, 64, 3)), 64)


def test_bad_surfaces_are_refused_in_the_users_words():
    sphere = uv_sphere()
    with pytest.raises(SurfaceError, match="'Plane' has no faces"):
        checked_surface("p", "Plane", np.zeros((0, 3, 5), np.float32), "meshes[0]")
    flat_uv = sphere.copy()
    flat_uv[..., 3:5] = 0.5
    with pytest.raises(SurfaceError, match="UV map of object 'Cube' has no area"):
        checked_surface("c", "Cube", flat_uv, "meshes[0]")
    broken = sphere.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(SurfaceError, match="not finite"):
        checked_surface("c", "Cube", broken, "meshes[0]")
    with pytest.raises(BakeError, match="resolution 10 "):
        bake_surfaces([checked_surface("s", "S", sphere, "m")], orbit_views(2, 4.0), lambda i: None, 10)


def test_surfaces_round_trip_through_their_folder(tmp_path):
    surfaces = (checked_surface("a", "A", uv_sphere(rings=4, segments=8), "m"),
                checked_surface("b", "", uv_sphere(rings=3, segments=6), "m"))
    write_surfaces(tmp_path, surfaces)
    read = read_surfaces(tmp_path)
    assert [(s.name, s.object_name) for s in read] == [("a", "A"), ("b", "")]
    assert all(np.array_equal(x.corners, y.corners) for x, y in zip(read, surfaces))
    assert read_surfaces(tmp_path / "nothing") == ()
    (tmp_path / "surfaces" / "000.npy").write_bytes(b"garbage")
    with pytest.raises(SurfaceError, match="damaged surfaces file"):
        read_surfaces(tmp_path)


def test_rasterize_keeps_the_nearest_triangle_and_covers_pixel_centres_once():
    # two triangles covering the same square, at depths 2 and 1: the nearer one wins everywhere
    square = np.array([[[0, 0], [8, 0], [8, 8]], [[0, 0], [8, 8], [0, 8]]], np.float64)
    triangles = np.concatenate([square, square])
    depth = np.array([[2.0] * 3, [2.0] * 3, [1.0] * 3, [1.0] * 3])
    index, barycentric, z = rasterize(triangles, 8, 8, depth)
    assert (index >= 2).all() and np.allclose(z, 1.0)
    assert np.allclose(barycentric.sum(-1), 1.0)
    index, _, _ = rasterize(square, 10, 10)
    assert (index[:8, :8] >= 0).all() and (index[8:, :] == -1).all() and (index[:, 8:] == -1).all()
