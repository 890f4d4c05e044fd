"""A small procedural Blender scene (coloured primitives on a checkered ground), its cameras, and Cycles renders.

Used by the 3D-consistency benchmark (``benchmarks/consistency``) and by the headless demo. Everything here is
deterministic: the same arguments give the same scene, the same cameras and (Cycles with a fixed seed) the same
pixels. This module needs ``bpy`` (Blender's Python or the ``bpy`` wheel); the camera maths comes from the add-on's
bpy-free core (``blender_addon.core``), the same code that exports the user's cameras in the product.

Typical use::

    scene = build_scene()
    cameras = make_orbit_cameras(scene, "train", 32)
    for camera in cameras:
        render_camera(scene, camera, out / "images" / f"{camera.name}.png", width=128, height=128)
    write_transforms(out / "transforms.json", cameras, [f"images/{c.name}.png" for c in cameras], 128, 128)
    recolor_object("Sphere", (0.1, 0.3, 0.9))   # the "edit"
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

import capture
from blender_addon.core.camera_model import BlenderCamera, intrinsics_from_blender
from blender_addon.core.poses import look_at
from protocol.messages import AUX_FRAME_KEYS

TARGET_KEY = AUX_FRAME_KEYS["target"]

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class PrimitiveSpec:
    """One coloured object of the scene."""

    name: str
    """Object (and material) name; ``recolor_object`` finds the object by it."""
    kind: str
    """``cube`` | ``uv_sphere`` | ``cylinder`` | ``cone``."""
    location: tuple[float, float, float]
    size: float
    """Edge length (cube) or diameter (others), in metres."""
    color: RGB
    """Base colour of the Principled BSDF (linear RGB)."""
    roughness: float = 0.6


@dataclass(frozen=True)
class SceneSpec:
    """What :func:`build_scene` builds."""

    objects: tuple[PrimitiveSpec, ...] = (
        PrimitiveSpec("Cube", "cube", (-0.85, -0.45, 0.4), 0.8, (0.8, 0.1, 0.08)),
        PrimitiveSpec("Sphere", "uv_sphere", (0.75, -0.35, 0.5), 1.0, (0.9, 0.75, 0.1)),
        PrimitiveSpec("Cylinder", "cylinder", (0.05, 0.85, 0.45), 0.7, (0.1, 0.6, 0.2)),
    )
    """The coloured primitives standing on the ground."""
    ground_size: float = 7.0
    """Side of the square ground plane (metres), centred on the origin."""
    ground_colors: tuple[RGB, RGB] = ((0.55, 0.55, 0.5), (0.3, 0.32, 0.35))
    """The two colours of the ground's checker pattern (texture for the NeRF to lock on to)."""
    ground_checker_scale: float = 6.0
    """Checker squares per ground side (Blender's Checker Texture scale on the plane's UVs)."""
    sun_strength: float = 3.0
    sun_rotation_deg: tuple[float, float, float] = (40.0, 0.0, 30.0)
    world_color: RGB = (0.55, 0.65, 0.85)
    """Background (sky) colour, also the ambient light."""
    world_strength: float = 0.6
    target: tuple[float, float, float] = (0.0, 0.0, 0.35)
    """Point every camera looks at."""


@dataclass
class RenderSettings:
    """Cycles settings for :func:`render_camera`: few samples, no denoiser, fixed seed (deterministic pixels)."""

    samples: int = 32
    """Path-tracing samples per pixel."""
    seed: int = 0
    """Cycles' sampling seed (fixed: repeated renders are identical)."""
    max_bounces: int = 3
    """Total light bounces; few bounces keep the noise of few samples low."""
    threads: int = 0
    """CPU threads (0: Blender's automatic choice)."""


@dataclass
class BuiltScene:
    """Handles to what :func:`build_scene` created."""

    spec: SceneSpec
    scene: bpy.types.Scene
    objects: dict[str, bpy.types.Object] = field(default_factory=dict)


def _material(name: str, color: RGB, roughness: float) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0 (the flag is deprecated there)
        material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    return material


def _ground_material(spec: SceneSpec) -> bpy.types.Material:
    material = _material("Ground", spec.ground_colors[0], 0.8)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = spec.ground_checker_scale
    checker.inputs["Color1"].default_value = (*spec.ground_colors[0], 1.0)
    checker.inputs["Color2"].default_value = (*spec.ground_colors[1], 1.0)
    links.new(checker.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return material


def _add_primitive(primitive: PrimitiveSpec) -> bpy.types.Object:
    size = primitive.size
    if primitive.kind == "cube":
        bpy.ops.mesh.primitive_cube_add(size=size, location=primitive.location)
    elif primitive.kind == "uv_sphere":
        bpy.ops.mesh.primitive_uv_sphere_add(radius=size / 2, segments=48, ring_count=24, location=primitive.location)
        bpy.ops.object.shade_smooth()
    elif primitive.kind == "cylinder":
        bpy.ops.mesh.primitive_cylinder_add(radius=size / 2, depth=primitive.location[2] * 2, vertices=48,
                                            location=primitive.location)
    elif primitive.kind == "cone":
        bpy.ops.mesh.primitive_cone_add(radius1=size / 2, depth=primitive.location[2] * 2, vertices=48,
                                        location=primitive.location)
    else:
        raise ValueError(f"PrimitiveSpec.kind: unknown primitive {primitive.kind!r} for {primitive.name!r}")
    obj = bpy.context.active_object
    obj.name = primitive.name
    obj.data.materials.append(_material(primitive.name, primitive.color, primitive.roughness))
    return obj


def build_scene(spec: SceneSpec | None = None, settings: RenderSettings | None = None, *,
                factory_reset: bool = True) -> BuiltScene:
    """Replace the current Blender file with a fresh, empty one and build the scene in it.

    ``factory_reset``: start from factory settings (a standalone script: nothing from the user's startup file or
    preferences leaks in); False only empties the file and keeps preferences and enabled add-ons (tests that share
    one Blender process).
    """
    spec = spec or SceneSpec()
    settings = settings or RenderSettings()
    if factory_reset:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    else:
        bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    built = BuiltScene(spec, scene)

    bpy.ops.mesh.primitive_plane_add(size=spec.ground_size, location=(0.0, 0.0, 0.0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground.data.materials.append(_ground_material(spec))
    built.objects["Ground"] = ground
    for primitive in spec.objects:
        built.objects[primitive.name] = _add_primitive(primitive)

    sun_data = bpy.data.lights.new("Sun", type="SUN")
    sun_data.energy = spec.sun_strength
    sun_data.angle = math.radians(2.0)
    sun = bpy.data.objects.new("Sun", sun_data)
    sun.rotation_euler = tuple(math.radians(a) for a in spec.sun_rotation_deg)
    scene.collection.objects.link(sun)

    world = bpy.data.worlds.new("World")
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0
        world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*spec.world_color, 1.0)
    background.inputs["Strength"].default_value = spec.world_strength
    scene.world = world

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = settings.samples
    scene.cycles.use_adaptive_sampling = False  # adaptive sampling makes noise depend on the content: keep it uniform
    scene.cycles.use_denoising = False
    scene.cycles.seed = settings.seed
    scene.cycles.use_animated_seed = False
    scene.cycles.max_bounces = settings.max_bounces
    if settings.threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = settings.threads
    scene.view_settings.view_transform = "Standard"  # plain sRGB: the PNG holds the colours the materials say
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.resolution_percentage = 100
    # PNG metadata (date, render time, file name, host...) would make identical renders differ as files.
    for stamp in ("date", "time", "render_time", "frame", "frame_range", "memory", "hostname", "camera", "lens",
                  "scene", "marker", "filename", "sequencer_strip", "note"):
        if hasattr(scene.render, f"use_stamp_{stamp}"):
            setattr(scene.render, f"use_stamp_{stamp}", False)
    return built


def recolor_object(name: str, color: RGB) -> None:
    """The benchmark's "edit": set the base colour of object ``name``'s material."""
    obj = bpy.data.objects.get(name)
    if obj is None or not obj.data.materials:
        raise KeyError(f"no object with a material named {name!r} in the scene")
    bsdf = obj.data.materials[0].node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)


@dataclass(frozen=True)
class GlassSpec:
    """A tinted glass look (Principled BSDF with full transmission)."""

    color: RGB = (0.15, 0.4, 1.0)
    """Tint (linear RGB)."""
    roughness: float = 0.12
    ior: float = 1.45


def glass_material(name: str, spec: GlassSpec) -> bpy.types.Material:
    material = _material(name, spec.color, spec.roughness)
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Transmission Weight"].default_value = 1.0
    bsdf.inputs["IOR"].default_value = spec.ior
    return material


@contextlib.contextmanager
def edited_look(object_name: str, material: bpy.types.Material) -> Iterator[None]:
    """Render object ``object_name`` with ``material`` inside the block (the intended result of an instruction, e.g.
    the sphere as blue glass: what the demo's simulated editor aims at); its own material is restored after."""
    obj = bpy.data.objects.get(object_name)
    if obj is None or not obj.data.materials:
        raise KeyError(f"no object with a material named {object_name!r} in the scene")
    original = obj.data.materials[0]
    obj.data.materials[0] = material
    try:
        yield
    finally:
        obj.data.materials[0] = original


def orbit_poses(count: int, *, target: Sequence[float], distance: float, elevations_deg: Sequence[float],
                azimuth_offset_deg: float = 0.0) -> list[np.ndarray]:
    """``count`` camera-to-world matrices evenly spaced in azimuth around ``target``, cycling through
    ``elevations_deg`` (a hemisphere band), all looking at ``target`` with +z up."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    center = np.asarray(target, dtype=np.float64)
    poses = []
    for index in range(count):
        azimuth = math.radians(azimuth_offset_deg + 360.0 * index / count)
        elevation = math.radians(elevations_deg[index % len(elevations_deg)])
        direction = np.array([math.cos(azimuth) * math.cos(elevation), math.sin(azimuth) * math.cos(elevation),
                              math.sin(elevation)])
        poses.append(look_at(center + distance * direction, center))
    return poses


def add_cameras(prefix: str, poses: Sequence[np.ndarray], *, lens_mm: float = 35.0,
                sensor_width_mm: float = 36.0) -> list[bpy.types.Object]:
    """Camera objects named ``{prefix}_{index:03d}`` at the given camera-to-world matrices."""
    cameras = []
    for index, pose in enumerate(poses):
        data = bpy.data.cameras.new(f"{prefix}_{index:03d}")
        data.lens = lens_mm
        data.sensor_width = sensor_width_mm
        data.sensor_fit = "HORIZONTAL"
        data.clip_start, data.clip_end = 0.05, 100.0
        camera = bpy.data.objects.new(f"{prefix}_{index:03d}", data)
        camera.matrix_world = Matrix([list(row) for row in pose])
        bpy.context.scene.collection.objects.link(camera)
        cameras.append(camera)
    return cameras


def render_camera(camera: bpy.types.Object, path: Path | str, width: int, height: int) -> Path:
    """Render ``camera`` with the scene's Cycles settings to the PNG ``path`` (absolute; folders created)."""
    scene = bpy.context.scene
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.filepath = os.fspath(path)
    bpy.ops.render.render(write_still=True)
    if not path.is_file():
        raise RuntimeError(f"Cycles did not write {path}")
    return path


def camera_intrinsics(camera: bpy.types.Object, width: int, height: int):
    """nerfstudio pinhole intrinsics of a Blender camera (the add-on's own camera model)."""
    data = camera.data
    if not isinstance(data, bpy.types.Camera):
        raise TypeError(f"camera: object {camera.name!r} is not a camera")
    return intrinsics_from_blender(BlenderCamera(
        lens=data.lens, sensor_width=data.sensor_width, sensor_height=data.sensor_height,
        sensor_fit=data.sensor_fit, shift_x=data.shift_x, shift_y=data.shift_y, width=width, height=height,
    ))


def write_transforms(path: Path | str, cameras: Sequence[bpy.types.Object], file_paths: Sequence[str],
                     width: int, height: int, target_paths: Sequence[str] | None = None) -> Path:
    """A nerfstudio ``transforms.json`` (written atomically) for ``cameras`` with images at ``file_paths``
    (relative to the file's folder); ``transform_matrix`` is ``camera.matrix_world``. ``target_paths``: each view's
    ground-truth edited image, written as the frame's ``target_file_path`` (read by the simulated editor only)."""
    if len(cameras) != len(file_paths) or (target_paths is not None and len(target_paths) != len(cameras)):
        raise ValueError(f"{len(cameras)} cameras but {len(file_paths)} file paths / "
                         f"{len(target_paths or [])} target paths")
    frames = [
        capture.CaptureFrame(file_path=file_path, intrinsics=camera_intrinsics(camera, width, height),
                     transform_matrix=[list(map(float, row)) for row in camera.matrix_world],
                     extra={} if target_paths is None else {TARGET_KEY: target_paths[index]})
        for index, (camera, file_path) in enumerate(zip(cameras, file_paths))
    ]
    return capture.write_transforms(path, capture.Capture(frames=frames, camera_model="OPENCV"))
