"""Existing captures: import one (nerfstudio, NeRF-synthetic / BlenderNeRF, instant-ngp or COLMAP, read by the shared
``capture`` package) as cameras (+ image planes or camera backgrounds), and export cameras back to
``transforms.json``. Held-out views (val / test splits) go into a child collection the edit does not use."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np

from ..core.poses import frustum_corners
from ..core.protocol_link import capture as capture_format
from . import cameras as cams

PLANE_DEPTH_FACTOR = 0.1
"""Image planes sit this fraction of the capture's camera spread in front of each camera."""


def import_capture(scene: bpy.types.Scene, path: str | Path, display: str = "PLANES") -> bpy.types.Collection:
    """Cameras (and photos) of a capture in a new collection; the scene resolution follows the first frame."""
    capture = capture_format.read_capture(path)
    folder = capture_format.capture_folder(capture)
    first = capture.frames[0].intrinsics
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = first.w, first.h, 100
    ycor = first.fl_x / first.fl_y
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = (1.0, ycor) if ycor >= 1 else (1.0 / ycor, 1.0)
    collection = cams.new_collection(scene, f"in2n capture {folder.name}")
    collection["in2n_capture"] = json.dumps({"folder": str(folder), "camera_model": capture.camera_model,
                                             "extra": capture.extra, "layout": capture.layout})
    held_out: bpy.types.Collection | None = None
    positions = np.array([np.array(f.transform_matrix)[:3, 3] for f in capture.frames])
    spread = float(np.linalg.norm(positions.max(axis=0) - positions.min(axis=0))) or 1.0
    for index, frame in enumerate(capture.frames):
        owner = collection
        if frame.split != "train":  # held-out views: shown, but not among the views the edit uploads
            if held_out is None:
                held_out = bpy.data.collections.new(f"{collection.name} held-out")
                scene.collection.children.link(held_out)
            owner = held_out
        obj = cams.new_camera(owner, Path(frame.file_path).stem or f"frame_{index:05d}", frame.transform_matrix)
        cams.apply_intrinsics(obj, frame.intrinsics)
        obj[cams.PROP_FILE_PATH] = frame.file_path
        obj[cams.PROP_SIZE] = [frame.intrinsics.w, frame.intrinsics.h]
        obj[cams.PROP_EXTRA] = json.dumps(frame.extra)
        obj[cams.PROP_SPLIT] = frame.split
        image_file = capture.image_path(folder, frame)
        if display == "NONE" or not image_file.is_file():
            continue
        image = bpy.data.images.load(str(image_file), check_existing=True)
        if display == "BACKGROUND":
            obj.data.show_background_images = True
            obj.data.background_images.new().image = image
        else:
            add_image_plane(owner, obj, frame, image, depth=PLANE_DEPTH_FACTOR * spread)
    return collection


def add_image_plane(collection: bpy.types.Collection, camera: bpy.types.Object, frame: capture_format.CaptureFrame,
                    image: bpy.types.Image, depth: float) -> bpy.types.Object:
    """A quad exactly covering the camera's view at ``depth``, parented to the camera, showing the photo."""
    k = frame.intrinsics
    corners = frustum_corners(k.fl_x, k.fl_y, k.cx, k.cy, k.w, k.h, depth)
    mesh = bpy.data.meshes.new(f"{camera.name}_photo")
    mesh.vertices.add(4)
    mesh.vertices.foreach_set("co", corners.astype(np.float32).ravel())
    mesh.loops.add(4)
    mesh.loops.foreach_set("vertex_index", np.array([3, 2, 1, 0], dtype=np.int32))  # counter-clockwise towards camera
    mesh.polygons.add(1)
    mesh.polygons.foreach_set("loop_start", np.array([0], dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.array([4], dtype=np.int32))
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32).ravel())
    mesh.update(calc_edges=True)
    mesh.validate()
    mesh.materials.append(photo_material(image))
    plane = bpy.data.objects.new(mesh.name, mesh)
    collection.objects.link(plane)
    plane.parent = camera  # parent without inverse: the plane stays in camera space
    plane["in2n_image_plane"] = True
    return plane


def photo_material(image: bpy.types.Image) -> bpy.types.Material:
    material = bpy.data.materials.new(f"in2n_{image.name}")
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0 (the flag is deprecated there)
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def set_plane_image(camera: bpy.types.Object, image: bpy.types.Image) -> bool:
    """Show ``image`` on the camera's image plane; False when it has none."""
    for child in camera.children:
        if child.get("in2n_image_plane") and child.active_material is not None:
            for node in child.active_material.node_tree.nodes:
                if node.type == "TEX_IMAGE":
                    node.image = image
                    return True
    return False


def export_capture(scene: bpy.types.Scene, objects: list[bpy.types.Object], path: str | Path,
                   size: tuple[int, int] | None = None, file_paths: list[str] | None = None) -> Path:
    """Write ``transforms.json`` for ``objects`` (imported capture cameras keep their photo paths and sizes;
    ``file_paths``: the images written for them, e.g. their renders at ``size``)."""
    frames = []
    for index, obj in enumerate(objects):
        extra = json.loads(obj.get(cams.PROP_EXTRA, "{}"))
        file_path = file_paths[index] if file_paths is not None else cams.file_path_of(obj, index)
        frames.append(capture_format.CaptureFrame(file_path, cams.camera_intrinsics(obj, scene, size),
                                                  cams.camera_to_world(obj), extra))
    capture_info = {}
    for collection in {c for obj in objects for c in obj.users_collection}:
        if "in2n_capture" in collection:
            capture_info = json.loads(collection["in2n_capture"])
    capture = capture_format.Capture(frames, camera_model=capture_info.get("camera_model", "OPENCV"),
                                     extra=capture_info.get("extra", {}))
    return capture_format.write_transforms(path, capture)


def capture_folder_of(objects: list[bpy.types.Object]) -> Path | None:
    """The folder of the capture these cameras were imported from (their photos' ``file_path``s are relative to it)."""
    for collection in {c for obj in objects for c in obj.users_collection}:
        if "in2n_capture" in collection:
            return Path(json.loads(collection["in2n_capture"])["folder"])
    return None
