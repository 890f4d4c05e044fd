"""A varied set of procedural Blender scenes nobody tuned the product for, rendered as the add-on uploads them
(blender environment). Prints one JSON line per scene.

    python -m benchmarks.scene_set.render_scenes --out SCENES [--size 96] [--only NAME ...]

Each scene mixes shapes (Suzanne subdivided, torus, cube, cylinder, cone, ico sphere), scales (a 12 cm toy to a 9 m
rock), materials (matte, glossy, metallic, a procedural texture), world colours (black, white, grey, blue, a dim
orange) and camera distances, with 6 to 16 orbit views. The first object is the *selected* one: each scene folder is
what "Selected objects only" uploads, written with the same add-on code and file layout as the server stores it:

    transforms.json, images/, targets/ (the intended edit: the selected object recoloured, for the SIMULATED
    editor), targets_grown/ (a shape edit: the selected object recoloured and grown by ``GROWN_SCALE`` about its
    centre; named by each frame's ``grown_target_file_path``), knowledge/<image>.npz (each view's exact z-depth
    and the selected object's mask, from the add-on's own depth-and-mask pass; ``benchmarks.scene_set.run`` stores
    them as the server does: 16-bit millimetre depth PNGs and mask PNGs, since Blender's environment has no Pillow),
    surfaces.json + surfaces/ (the selected object's triangles
    and UVs, from the add-on's own upload code), ground_truth.npy (its world-space triangles, float64 [T, 3, 3]),
    scene_truth.npy (every mesh's, the ground's too), scene.json (name, bounds, bounding radius)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="scene_set_blender_"))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Vector  # noqa: E402

import capture  # noqa: E402
from backend.surfaces import checked_surface, write_surfaces  # noqa: E402
from blender_addon.bpy_shell import aux_pass, surfaces  # noqa: E402
from demo import procedural_scene as ps  # noqa: E402
from protocol.messages import AUX_FRAME_KEYS  # noqa: E402

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Thing:
    kind: str
    """suzanne | torus | cube | cylinder | cone | ico_sphere"""
    location: tuple[float, float, float]
    size: float
    """Approximate extent in metres."""
    color: RGB
    metallic: float = 0.0
    roughness: float = 0.6
    textured: bool = False
    """A procedural noise texture on top of the colour."""


@dataclass(frozen=True)
class SceneRecipe:
    name: str
    things: tuple[Thing, ...]
    """The first is the selected object."""
    world: RGB
    views: int
    distance: float
    """Camera distance in units of the selected object's bounding radius."""
    ground: RGB | None = (0.5, 0.5, 0.5)
    elevations: tuple[float, ...] = (20.0, 40.0)
    edit_color: RGB = (0.1, 0.3, 0.9)
    extra: dict[str, float] = field(default_factory=dict)


SCENES = (
    SceneRecipe("suzanne_torus", (Thing("suzanne", (0, 0, 0.5), 1.0, (0.8, 0.5, 0.2)),
                                  Thing("torus", (1.3, 0.4, 0.3), 0.8, (0.2, 0.6, 0.3), textured=True)),
                world=(0.05, 0.05, 0.05), views=8, distance=4.0),
    SceneRecipe("toy_cube", (Thing("cube", (0.0, 0.0, 0.06), 0.12, (0.9, 0.1, 0.1)),
                             Thing("cone", (0.15, 0.05, 0.05), 0.1, (0.9, 0.9, 0.2))),
                world=(1.0, 1.0, 1.0), views=6, distance=5.0, edit_color=(0.1, 0.8, 0.2)),
    SceneRecipe("big_rock", (Thing("ico_sphere", (0, 0, 4.5), 9.0, (0.45, 0.42, 0.4), textured=True),),
                world=(0.3, 0.45, 0.8), views=12, distance=3.0, ground=(0.3, 0.25, 0.2), edit_color=(0.8, 0.8, 0.85)),
    SceneRecipe("metal_cylinder", (Thing("cylinder", (0, 0, 0.5), 1.0, (0.8, 0.8, 0.85), metallic=1.0,
                                         roughness=0.25),
                                   Thing("cube", (-1.0, 0.6, 0.25), 0.5, (0.2, 0.2, 0.8))),
                world=(0.5, 0.5, 0.5), views=10, distance=3.5, edit_color=(0.9, 0.6, 0.1)),
    SceneRecipe("glossy_torus_close", (Thing("torus", (0, 0, 0.3), 1.2, (0.1, 0.5, 0.9), roughness=0.15),),
                world=(0.8, 0.5, 0.3), views=16, distance=2.2, ground=None, edit_color=(0.9, 0.2, 0.6)),
    SceneRecipe("far_cone", (Thing("cone", (0, 0, 0.75), 1.5, (0.3, 0.8, 0.4)),
                             Thing("suzanne", (1.5, -1.0, 0.5), 1.0, (0.7, 0.7, 0.7))),
                world=(0.02, 0.02, 0.08), views=8, distance=6.0, edit_color=(0.9, 0.3, 0.1)),
    SceneRecipe("dark_suzanne", (Thing("suzanne", (0.3, -0.2, 0.6), 1.2, (0.05, 0.05, 0.06), textured=True),),
                world=(0.9, 0.9, 0.9), views=8, distance=3.0, ground=(0.7, 0.65, 0.6), edit_color=(0.9, 0.85, 0.3)),
    SceneRecipe("bright_on_white", (Thing("ico_sphere", (0, 0, 0.4), 0.8, (0.95, 0.95, 0.9)),
                                    Thing("torus", (0.8, 0.8, 0.2), 0.6, (0.9, 0.2, 0.2))),
                world=(1.0, 1.0, 1.0), views=12, distance=3.5, ground=(0.95, 0.95, 0.95),
                edit_color=(0.2, 0.2, 0.9)),
)


def material(name: str, thing: Thing) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*thing.color, 1.0)
    bsdf.inputs["Metallic"].default_value = thing.metallic
    bsdf.inputs["Roughness"].default_value = thing.roughness
    if thing.textured:
        noise, mix = nodes.new("ShaderNodeTexNoise"), nodes.new("ShaderNodeMix")
        noise.inputs["Scale"].default_value = 6.0
        mix.data_type = "RGBA"
        mix.inputs["Factor"].default_value = 0.6
        mix.inputs["A"].default_value = (*thing.color, 1.0)
        links.new(noise.outputs["Color"], mix.inputs["B"])
        links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    return material


def add_thing(thing: Thing, index: int) -> bpy.types.Object:
    size, location = thing.size, thing.location
    if thing.kind == "suzanne":
        bpy.ops.mesh.primitive_monkey_add(size=size, location=location)
        bpy.context.active_object.modifiers.new("subdivide", "SUBSURF").levels = 1
    elif thing.kind == "torus":
        bpy.ops.mesh.primitive_torus_add(major_radius=size * 0.35, minor_radius=size * 0.15, location=location)
    elif thing.kind == "cube":
        bpy.ops.mesh.primitive_cube_add(size=size, location=location)
    elif thing.kind == "cylinder":
        bpy.ops.mesh.primitive_cylinder_add(radius=size / 2, depth=size, location=location)
    elif thing.kind == "cone":
        bpy.ops.mesh.primitive_cone_add(radius1=size / 2, depth=size, location=location)
    elif thing.kind == "ico_sphere":
        bpy.ops.mesh.primitive_ico_sphere_add(radius=size / 2, subdivisions=3, location=location)
    else:
        raise ValueError(f"unknown thing {thing.kind!r}")
    obj = bpy.context.active_object
    obj.name = f"{thing.kind}_{index}"
    bpy.ops.object.shade_smooth()
    obj.data.materials.append(material(obj.name, thing))
    return obj


def build(recipe: SceneRecipe, size: int) -> tuple[list[bpy.types.Object], list[bpy.types.Object]]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine, scene.cycles.device, scene.cycles.samples = "CYCLES", "CPU", 16
    scene.cycles.seed, scene.render.threads_mode, scene.render.threads = 0, "FIXED", 2
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGB"
    world = bpy.data.worlds.new("world")
    scene.world = world
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*recipe.world, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
    things = [add_thing(thing, index) for index, thing in enumerate(recipe.things)]
    if recipe.ground is not None:
        extent = 8 * max(thing.size for thing in recipe.things)
        bpy.ops.mesh.primitive_plane_add(size=extent, location=(0, 0, 0))
        ground = bpy.context.active_object
        ground.name = "ground"
        ground.data.materials.append(material("ground", Thing("cube", (0, 0, 0), 1, recipe.ground, textured=True)))
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 10), rotation=(0.6, 0.2, 0.8))
    bpy.context.active_object.data.energy = 3.0
    selected = things[0]
    bpy.context.view_layer.update()
    low, high = ps_bounds(selected)
    radius = float(np.linalg.norm(high - low)) / 2
    poses = ps.orbit_poses(recipe.views, target=((low + high) / 2).tolist(), distance=recipe.distance * radius,
                           elevations_deg=recipe.elevations)
    cameras = ps.add_cameras("view", poses)
    for camera in cameras:
        camera.data.clip_start, camera.data.clip_end = 0.01 * radius, 100.0 * radius * recipe.distance
    return things, cameras


GROWN_SCALE = 1.3
"""The shape edit's growth of the selected object (its bounding radius grows by 30 %)."""
GROWN_TARGET_KEY = "grown_target_file_path"
"""Frame key of the shape edit's target images."""


def ps_bounds(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    return corners.min(axis=0), corners.max(axis=0)


def render_knowledge(camera: bpy.types.Object, selected: bpy.types.Object, path: Path, size: int) -> Path:
    """The add-on's depth-and-mask pass of ``camera`` into the EXR ``path``."""
    scene = bpy.context.scene
    settings = scene.render.image_settings
    saved = (settings.file_format, settings.color_mode, settings.color_depth)
    restore = aux_pass.prepare(scene, [selected])()
    try:
        settings.file_format, settings.color_mode, settings.color_depth = aux_pass.EXR_FORMAT
        return ps.render_camera(camera, path, size, size)
    finally:
        restore()
        settings.file_format, settings.color_mode, settings.color_depth = saved


def render_recipe(recipe: SceneRecipe, out: Path, size: int) -> dict[str, object]:
    things, cameras = build(recipe, size)
    selected = things[0]
    folder = out / recipe.name
    frames = []
    for index, camera in enumerate(cameras):
        name = f"frame_{index:05d}.png"
        ps.render_camera(camera, folder / "images" / name, size, size)
        knowledge = aux_pass.read(render_knowledge(camera, selected, folder / "work" / f"{index:05d}.exr", size))
        (folder / "knowledge").mkdir(parents=True, exist_ok=True)
        np.savez(folder / "knowledge" / f"{Path(name).stem}.npz", depth=knowledge.depth, mask=knowledge.mask)
        frames.append((camera, name))
    original = selected.data.materials[0]
    selected.data.materials[0] = material("edit", Thing("cube", (0, 0, 0), 1, recipe.edit_color))
    for camera, name in frames:
        ps.render_camera(camera, folder / "targets" / name, size, size)
    scale, location = selected.scale.copy(), selected.location.copy()
    centre = Vector((sum(ps_bounds(selected)) / 2).tolist())
    selected.scale = scale * GROWN_SCALE
    selected.location = centre + (location - centre) * GROWN_SCALE  # grown about the bounds' centre
    for camera, name in frames:
        ps.render_camera(camera, folder / "targets_grown" / name, size, size)
    selected.scale, selected.location = scale, location
    bpy.context.view_layer.update()
    selected.data.materials[0] = original
    [upload] = surfaces.upload_surfaces([selected], bpy.context)
    corners = np.frombuffer(upload.data, np.float32).reshape(-1, 3, 5)
    write_surfaces(folder, [checked_surface(upload.name, selected.name, corners, "meshes[0]")])
    np.save(folder / "ground_truth.npy", corners[..., :3].astype(np.float64))
    every = [np.frombuffer(u.data, np.float32).reshape(-1, 3, 5)[..., :3]
             for u in surfaces.upload_surfaces([obj for obj in bpy.context.scene.objects if obj.type == "MESH"],
                                               bpy.context)]
    np.save(folder / "scene_truth.npy", np.concatenate(every).astype(np.float64))
    keys = AUX_FRAME_KEYS
    capture_frames = [capture.CaptureFrame(
        f"images/{name}", ps.camera_intrinsics(camera, size, size),
        [list(map(float, row)) for row in camera.matrix_world],
        {keys["target"]: f"targets/{name}", GROWN_TARGET_KEY: f"targets_grown/{name}"})
        for camera, name in frames]
    capture.write_transforms(folder / "transforms.json", capture.Capture(frames=capture_frames, camera_model="OPENCV"))
    low, high = ps_bounds(selected)
    info = {"name": recipe.name, "views": recipe.views, "size": size, "selected": selected.name,
            "bounds_min": low.tolist(), "bounds_max": high.tolist(),
            "radius": float(np.linalg.norm(high - low)) / 2, "recipe": asdict(recipe),
            "mask_coverage": float(np.mean([np.mean(np.load(folder / "knowledge" / f"{Path(n).stem}.npz")["mask"] > 0)
                                            for _, n in frames]))}
    (folder / "scene.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--only", nargs="*", default=None, help="scene names (default: all)")
    args = parser.parse_args(argv)
    for recipe in SCENES:
        if args.only and recipe.name not in args.only:
            continue
        info = render_recipe(recipe, args.out.resolve(), args.size)
        print(json.dumps({key: info[key] for key in ("name", "views", "radius", "mask_coverage")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
