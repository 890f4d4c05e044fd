"""The selected objects as surfaces to bake onto, and the baked copies Import makes of them.

At Edit, each selected mesh object is copied with its modifiers applied (``new_from_object``: the user's object and
its data are never touched). The copy keeps the object's own UV map when that map can hold a bake; otherwise it gets
a fresh Smart UV Project layer. The copy is kept in the .blend (fake user) under the name the surface travels under,
so Import puts the baked texture on exactly the triangles and UVs that were baked.

Import makes an object of that mesh in the original's place, with a material showing the baked texture as the NeRF
saw it (emission: its lighting is in the texture) or, for users who relight, as a Principled base colour; the
texture is packed into the .blend; the previous copy of the same object is replaced.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..core import surfaces as core
from ..core.protocol_link import protocol

BAKE_UV = "in2n bake"
"""The UV layer a fresh Smart UV Project layout is written to (on the copy only)."""
SOURCE_KEY = "in2n_baked_from"
"""Custom property of a kept mesh and of a baked copy: the original object's name."""
UV_KEY = "in2n_bake_uv"
"""Custom property of a kept mesh: the UV layer the bake used."""
MATRIX_KEY = "in2n_matrix_world"
"""Custom property of a kept mesh: the object's matrix_world (16 numbers, row-major) when its surface was uploaded."""


class SurfaceError(ValueError):
    """A selected object cannot be baked onto; the message names it and says what to do."""


def upload_surfaces(objects: list[bpy.types.Object], context: bpy.types.Context) -> list[object]:
    """``protocol.MeshUpload`` per selected object (world space, modifiers applied, a UV map that can hold a
    bake). Raises :class:`SurfaceError` for an object that is not a mesh or has no faces."""
    depsgraph = context.evaluated_depsgraph_get()
    uploads: list[object] = []
    for obj in objects:
        if obj.type != "MESH":
            raise SurfaceError(f"'{obj.name}' is a {obj.type.lower()}, not a mesh: convert it (Object > Convert > "
                               "Mesh), deselect it, or set Result to 'New geometry from the NeRF'")
        mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph), preserve_all_data_layers=True,
                                               depsgraph=depsgraph)
        try:
            corners, layer = _corners_with_bakeable_uvs(obj, mesh, context)
        except SurfaceError:
            bpy.data.meshes.remove(mesh)
            raise
        name = core.surface_name(obj.name, corners)
        kept = bpy.data.meshes.get(name)
        if kept is not None:  # the same object as last time: keep the copy made then
            bpy.data.meshes.remove(mesh)
        else:
            mesh.name, mesh.use_fake_user = name, True
            mesh[SOURCE_KEY], mesh[UV_KEY] = obj.name, layer
            mesh[MATRIX_KEY] = [value for row in obj.matrix_world for value in row]
        uploads.append(protocol.MeshUpload.from_array(name, corners, obj.name))
    return uploads


def _corners_with_bakeable_uvs(obj: bpy.types.Object, mesh: bpy.types.Mesh, context: bpy.types.Context
                               ) -> tuple[np.ndarray, str]:
    if not len(mesh.polygons):
        raise SurfaceError(f"'{obj.name}' has no faces to bake onto (only vertices or edges): deselect it")
    layer = mesh.uv_layers.active.name if mesh.uv_layers.active is not None else None
    corners = _corners(obj, mesh, layer)
    if layer is None or core.uv_problem(corners[..., 3:5]) is not None:
        layer = _smart_uv_project(mesh, context)
        corners = _corners(obj, mesh, layer)
        if core.uv_problem(corners[..., 3:5]) == "has no area":
            raise SurfaceError(f"'{obj.name}': its faces have no area to bake onto")
    return corners, layer


def _corners(obj: bpy.types.Object, mesh: bpy.types.Mesh, layer: str | None) -> np.ndarray:
    mesh.calc_loop_triangles()
    positions = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", positions)
    loop_vertices = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    triangles = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("loops", triangles)
    uvs = np.zeros(len(mesh.loops) * 2, np.float32)
    if layer is not None:
        mesh.uv_layers[layer].data.foreach_get("uv", uvs)
    return core.triangle_corners(positions.reshape(-1, 3), loop_vertices, triangles.reshape(-1, 3),
                                 uvs.reshape(-1, 2), np.array(obj.matrix_world, dtype=np.float64))


def _smart_uv_project(mesh: bpy.types.Mesh, context: bpy.types.Context) -> str:
    """Blender's Smart UV Project into a new layer of ``mesh`` (the copy), through a temporary object."""
    layer = mesh.uv_layers.get(BAKE_UV) or mesh.uv_layers.new(name=BAKE_UV)
    mesh.uv_layers.active = layer
    temporary = bpy.data.objects.new("in2n uv layout", mesh)
    context.scene.collection.objects.link(temporary)
    view_layer = context.view_layer
    previous_active, previous_selection = view_layer.objects.active, list(context.selected_objects)
    try:
        for obj in previous_selection:
            obj.select_set(False)
        view_layer.objects.active = temporary
        temporary.select_set(True)
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(island_margin=0.01)
        bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        bpy.data.objects.remove(temporary)
        for obj in previous_selection:
            obj.select_set(True)
        view_layer.objects.active = previous_active
    return BAKE_UV


def import_baked(scene: bpy.types.Scene, collection: bpy.types.Collection, textures: dict[str, Path],
                 *, relight: bool = False) -> list[bpy.types.Object]:
    """A copy of each baked object with its texture: ``textures`` maps the surface's name (its kept mesh) to the
    baked PNG. Raises :class:`SurfaceError` when a kept mesh is gone from the .blend."""
    copies: list[bpy.types.Object] = []
    for name, path in sorted(textures.items()):
        mesh = bpy.data.meshes.get(name)
        if mesh is None:
            raise SurfaceError(f"the copy of the object this edit was baked onto ('{name}') is no longer in this "
                               ".blend: import 'New geometry from the NeRF' instead, or edit again")
        source = mesh.get(SOURCE_KEY, name)
        for old in [obj for obj in scene.objects if obj.get(SOURCE_KEY) == source and obj.get("in2n_kind") == "baked"]:
            bpy.data.objects.remove(old)  # importing again replaces the previous copy
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = f"in2n baked {source}"
        image.pack()
        copy = bpy.data.objects.new(f"{source} (edited)", mesh.copy())
        copy.data.materials.clear()
        copy.data.materials.append(baked_material(f"in2n baked {source}", image, mesh.get(UV_KEY, BAKE_UV), relight))
        # the surface was baked where the object stood at Edit: the copy stands there, whatever happened since
        values = list(mesh.get(MATRIX_KEY, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0, 0, 0, 1.0]))
        copy.matrix_world = Matrix([values[row * 4:row * 4 + 4] for row in range(4)])
        copy[SOURCE_KEY], copy["in2n_kind"] = source, "baked"
        collection.objects.link(copy)
        copies.append(copy)
    return copies


def baked_material(name: str, image: bpy.types.Image, uv_layer: str, relight: bool) -> bpy.types.Material:
    """The baked texture through the bake's UV layer: emitted as it is (the NeRF's lighting is in it) or, with
    ``relight``, as a Principled base colour."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    coordinates, texture = nodes.new("ShaderNodeUVMap"), nodes.new("ShaderNodeTexImage")
    coordinates.uv_map, texture.image = uv_layer, image
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(coordinates.outputs["UV"], texture.inputs["Vector"])
    if relight:
        shader = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(texture.outputs["Color"], shader.inputs["Base Color"])
        links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    else:
        shader = nodes.new("ShaderNodeEmission")
        links.new(texture.outputs["Color"], shader.inputs["Color"])
        links.new(shader.outputs["Emission"], output.inputs["Surface"])
    return material
