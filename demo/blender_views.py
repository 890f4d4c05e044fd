"""Blender-side pictures of the demo (needs bpy): the training cameras, renders of the original scene, and renders
of the imported result alone (same cameras, and a turntable)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import bpy
import numpy as np

from demo import procedural_scene as ps
from demo.blender_process import check_stop, quiet_stdout

TRAINING_COLLECTION = "Training cameras"
INTENDED_MATERIAL = "Blue glass (intended edit)"
TURNTABLE_COLLECTION = "Turntable cameras"
TRAINING_ELEVATIONS_DEG = (20.0, 40.0)
CAMERA_DISTANCE = 4.5
"""Metres from the scene's target: the whole group of objects fits the 35 mm view with some ground around it."""
RESULT_NEAR_CLIP = 2.3
"""Near clip (metres) of the cameras that render the imported result: a NeRF trained on view-inconsistent edits
grows floaters right in front of the training cameras, which would fill the frame; clipping at ``CAMERA_DISTANCE
- 2.2`` keeps everything within 2.2 m of the scene's centre (all objects and the middle of the ground) visible."""


def camera_collection(name: str, poses: Sequence[np.ndarray], prefix: str) -> tuple[bpy.types.Collection,
                                                                                       list[bpy.types.Object]]:
    """Cameras at ``poses`` in a new collection ``name`` (the add-on uploads a collection's cameras)."""
    collection = bpy.data.collections.new(name)
    bpy.context.scene.collection.children.link(collection)
    cameras = ps.add_cameras(prefix, poses)
    for camera in cameras:
        bpy.context.scene.collection.objects.unlink(camera)
        collection.objects.link(camera)
    return collection, cameras


def training_cameras(built: ps.BuiltScene, count: int) -> tuple[bpy.types.Collection, list[bpy.types.Object]]:
    poses = ps.orbit_poses(count, target=built.spec.target, distance=CAMERA_DISTANCE,
                           elevations_deg=TRAINING_ELEVATIONS_DEG, azimuth_offset_deg=15.0)
    return camera_collection(TRAINING_COLLECTION, poses, "view")


def turntable_cameras(built: ps.BuiltScene, count: int) -> tuple[bpy.types.Collection, list[bpy.types.Object]]:
    poses = ps.orbit_poses(count, target=built.spec.target, distance=CAMERA_DISTANCE, elevations_deg=(30.0,),
                           azimuth_offset_deg=-90.0)
    return camera_collection(TURNTABLE_COLLECTION, poses, "turntable")


def render_all(cameras: Sequence[bpy.types.Object], folder: Path, size: int) -> list[Path]:
    """One PNG per camera, ``<folder>/<camera name>.png``."""
    paths = []
    for camera in cameras:
        check_stop()
        with quiet_stdout():
            paths.append(ps.render_camera(camera, folder / f"{camera.name}.png", size, size))
    return paths


@contextlib.contextmanager
def only_visible(objects: Sequence[bpy.types.Object], samples: int) -> Iterator[None]:
    """Render exactly ``objects`` (shown even if hidden from renders, the rest of the scene's geometry hidden) with
    ``samples``; restores."""
    scene = bpy.context.scene
    keep = set(objects)
    geometry = [obj for obj in scene.objects if obj.type in ("MESH", "CURVES", "POINTCLOUD")]
    saved = {obj.name: obj.hide_render for obj in geometry}
    saved_samples = scene.cycles.samples
    try:
        for obj in geometry:
            obj.hide_render = obj not in keep
        scene.cycles.samples = samples
        yield
    finally:
        for obj in geometry:
            obj.hide_render = saved[obj.name]
        scene.cycles.samples = saved_samples


@contextlib.contextmanager
def near_clip(cameras: Sequence[bpy.types.Object], clip_start: float) -> Iterator[None]:
    """Temporarily move the cameras' near clipping plane to ``clip_start`` metres."""
    saved = [camera.data.clip_start for camera in cameras]
    try:
        for camera in cameras:
            camera.data.clip_start = clip_start
        yield
    finally:
        for camera, value in zip(cameras, saved):
            camera.data.clip_start = value


@contextlib.contextmanager
def intended_edit(object_name: str) -> Iterator[None]:
    """Inside the block the scene shows the intended result of the demo's instruction: ``object_name`` as blue glass
    (what the simulated editor aims at, and what results are scored against)."""
    material = bpy.data.materials.get(INTENDED_MATERIAL) or ps.glass_material(INTENDED_MATERIAL, ps.GlassSpec())
    with ps.edited_look(object_name, material):
        yield


def result_objects(collection: bpy.types.Collection) -> list[bpy.types.Object]:
    """What to show of an imported result: the copies of the user's objects with the edit baked on when there are
    any, else the mesh (the point cloud would cover it), else the point cloud."""
    objects = [obj for obj in collection.objects if obj.type == "MESH"]
    baked = [obj for obj in objects if obj.get("in2n_kind") == "baked"]
    meshes = [obj for obj in objects if obj.get("in2n_kind") == "mesh"]
    return baked or meshes or objects


def world_bounds(objects: Sequence[bpy.types.Object]) -> tuple[list[float], list[float]]:
    """Axis-aligned world-space bounds of the objects' mesh vertices."""
    points = []
    for obj in objects:
        coordinates = np.empty(len(obj.data.vertices) * 3, dtype=np.float64)
        obj.data.vertices.foreach_get("co", coordinates)
        matrix = np.asarray(obj.matrix_world, dtype=np.float64)
        points.append(coordinates.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3])
    stacked = np.concatenate(points) if points else np.zeros((1, 3))
    return stacked.min(axis=0).tolist(), stacked.max(axis=0).tolist()


def save_blend(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path.resolve()), check_existing=False, compress=True)
    return path
