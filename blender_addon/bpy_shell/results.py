"""Bringing results into Blender: meshes and coloured point clouds (already in the scene's world frame, since the
add-on exported ``matrix_world``), through Blender's own importers; edited photos onto capture image planes."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import cameras as cams
from . import capture as capture_io

COLOR_ATTRIBUTE = "Col"
"""Blender's PLY importer names the vertex colour attribute of uchar red/green/blue properties ``Col``."""


def _import_file(path: Path) -> list[bpy.types.Object]:
    """Import one PLY/OBJ with Blender's importer; returns the new objects."""
    before = set(bpy.data.objects)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        result = bpy.ops.wm.ply_import(filepath=str(path), forward_axis="Y", up_axis="Z")
    elif suffix == ".obj":
        result = bpy.ops.wm.obj_import(filepath=str(path), forward_axis="Y", up_axis="Z")
    elif suffix in (".glb", ".gltf"):
        result = bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        raise ValueError(f"{path.name}: unsupported result format {suffix!r} (expected .ply, .obj, .glb)")
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender could not import {path}")
    return [obj for obj in bpy.data.objects if obj not in before]


def vertex_color_material(name: str) -> bpy.types.Material:
    """Shows the ``Col`` attribute (point colours / vertex colours) in the viewport and in renders."""
    material = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0 (the flag is deprecated there)
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = COLOR_ATTRIBUTE
    shader = nodes.new("ShaderNodeBsdfPrincipled")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(attribute.outputs["Color"], shader.inputs["Base Color"])
    links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    return material


def points_node_group(name: str, radius: float, material: bpy.types.Material) -> bpy.types.NodeTree:
    """Geometry nodes: faceless mesh -> points of ``radius`` with ``material``, so a point cloud shows up in the
    viewport and in renders (loose vertices alone are invisible in object mode). Values live on the nodes
    (modifier input properties differ between Blender versions)."""
    group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    inputs, outputs = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    to_points, set_material = nodes.new("GeometryNodeMeshToPoints"), nodes.new("GeometryNodeSetMaterial")
    to_points.inputs["Radius"].default_value = radius
    set_material.inputs["Material"].default_value = material
    links.new(inputs.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], outputs.inputs["Geometry"])
    return group


def show_as_points(obj: bpy.types.Object, material: bpy.types.Material) -> bpy.types.Modifier:
    """Add the points modifier; the radius follows the cloud's size and density (editable on the node)."""
    size = max(obj.dimensions) or 1.0
    radius = 0.5 * size / max(len(obj.data.vertices), 1) ** (1 / 3)
    modifier = obj.modifiers.new("in2n points", "NODES")
    modifier.node_group = points_node_group(f"in2n points {obj.name}", radius, material)
    return modifier


def import_results(scene: bpy.types.Scene, files: dict[str, Path], kinds: dict[str, str], *, job_id: str,
                   mesh: bool = True, pointcloud: bool = True) -> bpy.types.Collection:
    """Import the chosen kinds into a new collection named after the job; objects are moved, not copied."""
    collection = cams.new_collection(scene, f"in2n result {job_id}")
    material = vertex_color_material("in2n vertex colours")
    wanted = {"mesh": mesh, "pointcloud": pointcloud}
    for name, path in sorted(files.items()):
        kind = kinds.get(name, "other")
        if not wanted.get(kind, False):
            continue
        for obj in _import_file(Path(path)):
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            collection.objects.link(obj)
            obj["in2n_kind"] = kind
            if obj.type == "MESH" and COLOR_ATTRIBUTE in obj.data.color_attributes:
                obj.data.materials.append(material)
            if obj.type == "MESH" and len(obj.data.polygons) == 0:
                show_as_points(obj, material)
    return collection


def apply_edited_images(uploaded: list[bpy.types.Object], files: dict[str, Path],
                        camera_index: dict[str, int]) -> int:
    """Put each edited image on the image plane of its camera: by the artifact's ``camera_index`` into the uploaded
    cameras, else by the photo's file name or the camera's name. Returns how many planes changed."""
    by_file = {Path(cams.file_path_of(obj, i)).name: obj for i, obj in enumerate(uploaded)}
    by_name = {obj.name: obj for obj in uploaded}
    count = 0
    for name, path in files.items():
        index = camera_index.get(name)
        camera = (uploaded[index] if index is not None and 0 <= index < len(uploaded)
                  else by_file.get(Path(name).name) or by_name.get(Path(name).stem))
        if camera is not None and capture_io.set_plane_image(camera, bpy.data.images.load(str(path), check_existing=True)):
            count += 1
    return count
