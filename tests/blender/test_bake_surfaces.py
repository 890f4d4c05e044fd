"""Baking onto the user's objects, Blender's side (issue 20): the surfaces Edit uploads are the selected objects'
evaluated triangles in world space with a UV map that can hold a bake (a fresh Smart UV Project layout on a copy when
the object's own map is missing, tiles or overlaps; the original is never touched); bad selections are refused in
the user's words; masks that show nothing are refused before upload; earlier imported results stay out of the
views' renders; Import makes a textured copy in the original's place and replaces it on a second import."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from blender_addon.core import surfaces as core
from blender_addon.core.uploads import mask_problem

pytestmark = pytest.mark.timeout(120)


def quad_uvs(offset=(0.0, 0.0), scale=0.5) -> np.ndarray:
    o, s = np.array(offset), scale
    return np.array([[o, o + [s, 0], o + [s, s]], [o, o + [s, s], o + [0, s]]], np.float32)


def test_uv_problems_are_named() -> None:
    assert core.uv_problem(quad_uvs()) is None
    assert core.uv_problem(np.concatenate([quad_uvs(), quad_uvs((0.5, 0.5))])) is None  # side by side: fine
    assert core.uv_problem(np.concatenate([quad_uvs(), quad_uvs((0.1, 0.1))])) == "overlaps (faces share texels)"
    assert core.uv_problem(quad_uvs((0.8, 0.0))) == "tiles (UVs outside the 0-1 square)"
    assert core.uv_problem(np.zeros((2, 3, 2), np.float32)) == "has no area"
    # shared edges of neighbouring faces are not overlaps
    counts = core.coverage_counts(quad_uvs(scale=1.0), 64)
    assert (counts <= 1).all() and (counts == 1).mean() > 0.95  # texels on the diagonal lie in neither


def test_triangle_corners_are_world_space_with_their_loops_uvs() -> None:
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    loops = np.array([0, 1, 2, 3], np.int32)
    triangles = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    matrix = np.eye(4)
    matrix[:3, :3] *= 2
    matrix[:3, 3] = [10, 0, 5]
    corners = core.triangle_corners(positions, loops, triangles, uvs, matrix)
    assert corners.shape == (2, 3, 5) and corners.dtype == np.float32
    assert np.allclose(corners[1, 2], [10, 2, 5, 0, 1])
    assert core.surface_name("Cube", corners) == core.surface_name("Cube", corners.copy())
    assert core.surface_name("Cube", corners) != core.surface_name("Cube", corners * 1.01)


def test_masks_that_show_nothing_are_refused_with_the_cause() -> None:
    empty = [np.zeros((100, 100), np.uint8) for _ in range(4)]
    speck = [m.copy() for m in empty]
    speck[2][0:2, 0:2] = 255  # 0.04 %
    message = mask_problem(speck, ["Suzanne"])
    assert message is not None and "'Suzanne'" in message and "0.04%" in message and "0.5%" in message
    enough = [m.copy() for m in empty]
    enough[3][0:10, 0:10] = 255  # 1 % in one view is enough
    assert mask_problem(enough, ["Suzanne"]) is None


def evaluated_world_triangles(obj: bpy.types.Object) -> np.ndarray:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = obj.evaluated_get(depsgraph).to_mesh()
    mesh.calc_loop_triangles()
    points = np.array([[obj.matrix_world @ mesh.vertices[v].co for v in tri.vertices] for tri in mesh.loop_triangles])
    obj.evaluated_get(depsgraph).to_mesh_clear()
    return points


def test_upload_surfaces_are_the_evaluated_objects_in_world_space(addon: ModuleType, scene: bpy.types.Scene) -> None:
    surfaces = addon.bpy_shell.surfaces
    bpy.ops.mesh.primitive_monkey_add(location=(3.0, -1.0, 0.5), rotation=(0.3, 0.0, 0.7))
    monkey = bpy.context.active_object
    monkey.scale = (0.5, 0.5, 0.5)
    monkey.modifiers.new("subdivide", "SUBSURF").levels = 1
    grid = bpy.data.meshes.new("grid without UVs")  # a mesh without a UV map
    grid.from_pydata([(x, y, 0.1 * x * y) for y in range(4) for x in range(4)], [],
                     [(y * 4 + x, y * 4 + x + 1, y * 4 + x + 5, y * 4 + x + 4) for y in range(3) for x in range(3)])
    plane = bpy.data.objects.new("Grid", grid)
    plane.location = (0, 0, -1)
    scene.collection.objects.link(plane)
    bpy.ops.mesh.primitive_cube_add(location=(-2, 0, 0))
    tiled = bpy.context.active_object
    for loop in tiled.data.uv_layers[0].data:
        loop.uv = (loop.uv[0] * 3.0, loop.uv[1] * 3.0)  # a tiling map
    originals = {obj.name: (len(obj.data.uv_layers), obj.data.name) for obj in (monkey, plane, tiled)}

    uploads = surfaces.upload_surfaces([monkey, plane, tiled], bpy.context)
    assert [upload.object_name for upload in uploads] == [monkey.name, plane.name, tiled.name]
    for obj, upload in zip((monkey, plane, tiled), uploads):
        corners = np.frombuffer(upload.data, np.float32).reshape(-1, 3, 5)
        expected = evaluated_world_triangles(obj)
        assert corners.shape[0] == len(expected) and np.allclose(corners[..., :3], expected, atol=1e-5)
        assert core.uv_problem(corners[..., 3:5]) is None, obj.name
        kept = bpy.data.meshes[upload.name]
        assert kept.use_fake_user and kept[surfaces.SOURCE_KEY] == obj.name
        assert (len(obj.data.uv_layers), obj.data.name) == originals[obj.name]  # the user's object is untouched
    assert bpy.data.meshes[uploads[0].name][surfaces.UV_KEY] != surfaces.BAKE_UV  # Suzanne's own map is fine
    assert bpy.data.meshes[uploads[1].name][surfaces.UV_KEY] == surfaces.BAKE_UV  # no map: Smart UV Project
    assert bpy.data.meshes[uploads[2].name][surfaces.UV_KEY] == surfaces.BAKE_UV  # tiling: Smart UV Project
    # the same objects again: the same names, no second copy
    again = surfaces.upload_surfaces([monkey], bpy.context)
    assert again[0].name == uploads[0].name and len([m for m in bpy.data.meshes if m.name.startswith("in2n bake")]) == 3


def test_bad_selections_are_refused_by_name(addon: ModuleType, scene: bpy.types.Scene) -> None:
    surfaces = addon.bpy_shell.surfaces
    bpy.ops.object.text_add()
    text = bpy.context.active_object
    with pytest.raises(surfaces.SurfaceError, match=f"'{text.name}' is a font, not a mesh"):
        surfaces.upload_surfaces([text], bpy.context)
    mesh = bpy.data.meshes.new("edges only")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0)], [(0, 1)], [])
    wire = bpy.data.objects.new("Wire", mesh)
    scene.collection.objects.link(wire)
    before = len(bpy.data.meshes)
    with pytest.raises(surfaces.SurfaceError, match="'Wire' has no faces"):
        surfaces.upload_surfaces([wire], bpy.context)
    assert len(bpy.data.meshes) == before  # the failed copy is not left behind


def test_import_places_a_textured_copy_where_the_original_stood_and_replaces_it(
        addon: ModuleType, scene: bpy.types.Scene, tmp_path: Path) -> None:
    surfaces = addon.bpy_shell.surfaces
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=(1.0, 2.0, 0.3), segments=12, ring_count=6)
    sphere = bpy.context.active_object
    [upload] = surfaces.upload_surfaces([sphere], bpy.context)
    sphere.location = (9.0, 9.0, 9.0)  # moved after Edit: the copy stands where the bake was made
    texture = tmp_path / "baked.png"
    image = bpy.data.images.new("t", 8, 8)
    image.pixels.foreach_set(np.tile([0.2, 0.4, 0.8, 1.0], 64).astype(np.float32))
    image.filepath_raw, image.file_format = str(texture), "PNG"
    image.save()
    collection = bpy.data.collections.new("result")
    scene.collection.children.link(collection)
    [copy] = surfaces.import_baked(scene, collection, {upload.name: texture})
    bpy.context.view_layer.update()
    corners = np.frombuffer(upload.data, np.float32).reshape(-1, 3, 5)
    copied = evaluated_world_triangles(copy)
    assert np.allclose(np.sort(copied.reshape(-1, 3), axis=0), np.sort(corners[..., :3].reshape(-1, 3), axis=0),
                       atol=1e-5)
    material = copy.data.materials[0]
    node = next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert node.image.packed_file is not None  # kept in the .blend
    assert any(n.type == "EMISSION" for n in material.node_tree.nodes)  # shown as the NeRF saw it
    first_name = copy.name
    [relit] = surfaces.import_baked(scene, collection, {upload.name: texture}, relight=True)
    baked = [obj for obj in scene.objects if obj.get("in2n_kind") == "baked"]
    assert baked == [relit] and relit.name == first_name  # a second import replaces the first copy
    assert any(n.type == "BSDF_PRINCIPLED" for n in relit.data.materials[0].node_tree.nodes)
    bpy.data.meshes.remove(bpy.data.meshes[upload.name])
    with pytest.raises(surfaces.SurfaceError, match="no longer in this .blend"):
        surfaces.import_baked(scene, collection, {upload.name: texture})
