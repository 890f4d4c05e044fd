"""Blender cameras <-> nerfstudio cameras: export intrinsics/extrinsics, create cameras (orbit, capture import)."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..core.camera_model import BlenderCamera, Intrinsics, blender_from_intrinsics, intrinsics_from_blender, render_size
from ..core.poses import orbit_poses, rigid, sphere_poses
from ..core.protocol_link import protocol

#: custom properties an imported capture camera keeps, so export can write the capture back as it was
PROP_FILE_PATH = "in2n_file_path"
PROP_SIZE = "in2n_size"
PROP_EXTRA = "in2n_frame_extra"
PROP_ASPECT = "in2n_pixel_aspect"
"""Pixel aspect is a scene setting in Blender; a capture whose frames differ keeps each frame's own here."""
PROP_SPLIT = "in2n_split"
"""The capture split a camera came from: ``train`` (edited) or ``val`` / ``test`` (held-out views)."""
PROP_TARGET = "in2n_target_path"
"""Optional: the ground-truth edited image of this view (a file path), uploaded with the scene for the SIMULATED
editor only (demos and benchmarks without model weights; real editors never see it). An imported capture's frames
carry it as ``target_file_path`` instead (kept in ``PROP_EXTRA``)."""


class CameraError(ValueError):
    """A camera that cannot be exported; the message names it."""


def scene_render_size(scene: bpy.types.Scene) -> tuple[int, int]:
    render = scene.render
    return render_size(render.resolution_x, render.resolution_y, render.resolution_percentage)


def native_size(obj: bpy.types.Object, scene: bpy.types.Scene) -> tuple[int, int]:
    """The camera's own image size: an imported photo's size, else the scene's render size."""
    stored = obj.get(PROP_SIZE)
    return (int(stored[0]), int(stored[1])) if stored is not None else scene_render_size(scene)


def camera_intrinsics(obj: bpy.types.Object, scene: bpy.types.Scene, size: tuple[int, int] | None = None) -> Intrinsics:
    """Intrinsics of ``obj`` rendered with ``scene``'s resolution and pixel aspect (or ``size``)."""
    data = obj.data
    if obj.type != "CAMERA":
        raise CameraError(f"'{obj.name}' is not a camera")
    if data.type != "PERSP":
        raise CameraError(f"camera '{obj.name}' is {data.type.lower()}: only perspective cameras can be used")
    if size is None:
        size = native_size(obj, scene)
    aspect = obj.get(PROP_ASPECT) or (scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)
    return intrinsics_from_blender(BlenderCamera(
        lens=data.lens, sensor_width=data.sensor_width, sensor_height=data.sensor_height, sensor_fit=data.sensor_fit,
        shift_x=data.shift_x, shift_y=data.shift_y, width=size[0], height=size[1],
        pixel_aspect_x=float(aspect[0]), pixel_aspect_y=float(aspect[1]),
    ))


def camera_to_world(obj: bpy.types.Object) -> list[list[float]]:
    """``transform_matrix``: the camera's world matrix without scale (Blender camera axes = nerfstudio's)."""
    return rigid(np.array(obj.matrix_world, dtype=np.float64)).tolist()


def collection_cameras(collection: bpy.types.Collection | None) -> list[bpy.types.Object]:
    """Cameras of a collection (and its children), in name order so exports are reproducible."""
    if collection is None:
        return []
    return sorted((obj for obj in collection.all_objects if obj.type == "CAMERA"), key=lambda obj: obj.name)


def new_collection(scene: bpy.types.Scene, name: str) -> bpy.types.Collection:
    collection = bpy.data.collections.new(name)
    scene.collection.children.link(collection)
    return collection


def new_camera(collection: bpy.types.Collection, name: str, matrix: list[list[float]] | np.ndarray) -> bpy.types.Object:
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    obj.matrix_world = Matrix([list(row) for row in np.asarray(matrix, dtype=np.float64)])
    collection.objects.link(obj)
    return obj


def apply_intrinsics(obj: bpy.types.Object, intrinsics: Intrinsics) -> BlenderCamera:
    """Set lens, sensor and shift so the camera projects with ``intrinsics`` (pixel aspect is per scene)."""
    settings = blender_from_intrinsics(intrinsics, sensor_width=obj.data.sensor_width)
    data = obj.data
    data.sensor_fit, data.sensor_width, data.sensor_height = settings.sensor_fit, settings.sensor_width, settings.sensor_height
    data.lens, data.shift_x, data.shift_y = settings.lens, settings.shift_x, settings.shift_y
    obj[PROP_ASPECT] = [settings.pixel_aspect_x, settings.pixel_aspect_y]
    return settings


def bounds_of(objects: list[bpy.types.Object]) -> tuple[np.ndarray, np.ndarray]:
    """World-space axis-aligned bounds of the objects' bounding boxes."""
    corners = [np.array(obj.matrix_world, dtype=np.float64) @ np.c_[np.array(obj.bound_box), np.ones(8)].T
               for obj in objects if obj.type not in ("CAMERA", "LIGHT", "EMPTY")]
    if not corners:
        raise CameraError("select at least one object with geometry to orbit around")
    points = np.concatenate([c[:3].T for c in corners])
    return points.min(axis=0), points.max(axis=0)


def create_orbit(scene: bpy.types.Scene, targets: list[bpy.types.Object], count: int, *, elevation_deg: float,
                 distance_factor: float, name: str = "in2n orbit cameras", sampling: str = "RING", seed: int = 0,
                 upper_hemisphere: bool = True) -> bpy.types.Collection:
    """Cameras around ``targets`` in a new collection called ``name``; an earlier one of that name (and its
    cameras) is replaced, so regenerating never piles up cameras."""
    low, high = bounds_of(targets)
    remove_collection(bpy.data.collections.get(name))
    collection = new_collection(scene, name)
    if sampling == "SPHERE":
        poses = sphere_poses(low, high, count, seed=seed, upper_hemisphere=upper_hemisphere,
                             distance_factor=distance_factor)
    else:
        poses = orbit_poses(low, high, count, elevation_deg=elevation_deg, distance_factor=distance_factor)
    for index, pose in enumerate(poses):
        camera = new_camera(collection, f"in2n_orbit_{index:03d}", pose)
        camera.data.clip_end = max(camera.data.clip_end, float(np.linalg.norm(high - low)) * distance_factor * 4)
    return collection


def remove_collection(collection: bpy.types.Collection | None) -> None:
    """Delete a collection of cameras the add-on made, with its cameras and their data."""
    if collection is None:
        return
    for obj in list(collection.objects):
        data = obj.data
        bpy.data.objects.remove(obj)
        if data is not None and data.users == 0 and isinstance(data, bpy.types.Camera):
            bpy.data.cameras.remove(data)
    bpy.data.collections.remove(collection)


def file_path_of(obj: bpy.types.Object, index: int) -> str:
    return str(obj.get(PROP_FILE_PATH, f"images/frame_{index + 1:05d}.png"))


def image_path_of(obj: bpy.types.Object, capture_folder: Path) -> Path | None:
    stored = obj.get(PROP_FILE_PATH)
    return (capture_folder / stored).resolve() if stored else None


def target_path_of(obj: bpy.types.Object, capture_folder: Path | None) -> Path | None:
    """The view's simulated-editor target image (see :data:`PROP_TARGET`), or None."""
    stored = obj.get(PROP_TARGET)
    if stored:
        return Path(bpy.path.abspath(str(stored))).resolve()
    relative = json.loads(obj.get(PROP_EXTRA, "{}")).get(protocol.messages.AUX_FRAME_KEYS["target"])
    if isinstance(relative, str) and capture_folder is not None:
        return (capture_folder / relative).resolve()
    return None
