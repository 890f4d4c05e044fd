"""Render the consistency benchmark's dataset with Cycles (blender env): original and ground-truth edited scene from
training cameras and held-out cameras. Deterministic (fixed scene, cameras and Cycles seed). Prints one JSON object.

    python -m benchmarks.consistency.render_dataset --out DATA --train-views 32 --heldout-views 8 --size 128
    python -m benchmarks.consistency.render_dataset --out DATA ... --knowledge   # + depth, masks, ground-truth mesh

The "edit" recolours one object (default: the yellow sphere becomes blue). Held-out cameras sit between the
training cameras in azimuth and elevation, so they test the 3D scene, not memorised views. The layout is described
in :mod:`benchmarks.consistency.layout`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.consistency.layout import DATASET_FILE, IMAGES_FOLDER, TRANSFORMS_FILE  # noqa: E402

TRAIN_ELEVATIONS_DEG = (20.0, 35.0, 50.0)
"""Training cameras cycle through these elevations (a band of the upper hemisphere)."""
HELDOUT_ELEVATIONS_DEG = (28.0, 42.0)
"""Held-out cameras: elevations between the training ones."""


def parse_color(text: str) -> tuple[float, float, float]:
    parts = [float(value) for value in text.split(",")]
    if len(parts) != 3 or not all(0.0 <= value <= 1.0 for value in parts):
        raise argparse.ArgumentTypeError(f"--edit-color must be three numbers in [0, 1] like 0.1,0.25,0.9: {text!r}")
    return parts[0], parts[1], parts[2]


def render_split(cameras, folder: Path, size: int) -> float:
    """Render ``cameras`` into ``folder/images`` and write ``folder/transforms.json``; returns seconds taken."""
    from demo.procedural_scene import render_camera, write_transforms

    started = time.perf_counter()
    file_paths = [f"{IMAGES_FOLDER}/{camera.name}.png" for camera in cameras]
    for camera, file_path in zip(cameras, file_paths):
        render_camera(camera, folder / file_path, size, size)
    write_transforms(folder / TRANSFORMS_FILE, cameras, file_paths, size, size)
    return time.perf_counter() - started


def write_knowledge(cameras, folder: Path, size: int, edit_object: str, out: Path) -> float:
    """What Blender knows, as the add-on sends it: each training view's z-depth (16-bit millimetre PNG,
    ``depth_file_path``) and the edited object's mask (``edit_mask_path``), with the add-on's own depth-and-mask pass;
    and the scene's meshes in world space (``ground_truth.ply``, for floaters and Chamfer distances)."""
    import bpy
    import numpy as np

    from benchmarks.consistency.png import write_grey_png
    from blender_addon.bpy_shell import aux_pass
    from demo.procedural_scene import render_camera

    started = time.perf_counter()
    scene = bpy.context.scene
    restore = aux_pass.prepare(scene, [scene.objects[edit_object]])()
    image_settings = scene.render.image_settings
    saved = (image_settings.file_format, image_settings.color_mode, image_settings.color_depth)
    transforms = json.loads((folder / TRANSFORMS_FILE).read_text())
    try:
        image_settings.file_format, image_settings.color_mode, image_settings.color_depth = aux_pass.EXR_FORMAT
        for camera, frame in zip(cameras, transforms["frames"]):
            exr = render_camera(camera, folder / "knowledge" / f"{camera.name}.exr", size, size)
            view = aux_pass.read(exr)
            for key, sub_folder, pixels in (
                    ("depth_file_path", "depth", np.rint(np.clip(view.depth, 0, 65.535) * 1000).astype(np.uint16)),
                    ("edit_mask_path", "edit_masks", view.mask)):
                write_grey_png(folder / sub_folder / f"{camera.name}.png", pixels)
                frame[key] = f"{sub_folder}/{camera.name}.png"
    finally:
        image_settings.file_format, image_settings.color_mode, image_settings.color_depth = saved
        restore()
    (folder / TRANSFORMS_FILE).write_text(json.dumps(transforms, indent=2))
    for obj in scene.objects:
        obj.select_set(obj.type == "MESH")
    bpy.ops.wm.ply_export(filepath=str(out / "ground_truth.ply"), export_selected_objects=True,
                          apply_modifiers=True, forward_axis="Y", up_axis="Z", ascii_format=False)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (created)")
    parser.add_argument("--train-views", type=int, default=32)
    parser.add_argument("--heldout-views", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="side of the square images in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--distance", type=float, default=4.5, help="camera distance from the scene centre (m)")
    parser.add_argument("--edit-object", default="Sphere", help="object the edit recolours")
    parser.add_argument("--edit-color", type=parse_color, default=(0.1, 0.25, 0.9), help="its new colour (linear RGB)")
    parser.add_argument("--threads", type=int, default=0, help="Cycles CPU threads (0: automatic)")
    parser.add_argument("--knowledge", action="store_true",
                        help="also each training view's depth and the edited object's mask (the add-on's pass), and "
                             "the ground-truth mesh (benchmarks.consistency.blender_aware)")
    args = parser.parse_args(argv)
    if args.train_views < 3 or args.heldout_views < 1 or args.size < 16:
        parser.error("need --train-views >= 3, --heldout-views >= 1 and --size >= 16")

    # Blender writes user config/cache under its resources folder; keep that out of the user's home.
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="in2n-consistency-blender-"))
    from demo.procedural_scene import RenderSettings, add_cameras, build_scene, orbit_poses, recolor_object

    started = time.perf_counter()
    out: Path = args.out.resolve()
    built = build_scene(settings=RenderSettings(samples=args.samples, threads=args.threads))
    if args.edit_object not in {spec.name for spec in built.spec.objects}:
        parser.error(f"--edit-object {args.edit_object!r} is not one of the scene's objects")
    target = built.spec.target
    train = add_cameras("train", orbit_poses(args.train_views, target=target, distance=args.distance,
                                             elevations_deg=TRAIN_ELEVATIONS_DEG))
    # Half a training step (plus a little) away in azimuth: never on top of a training camera.
    offset = 180.0 / args.train_views + 3.0
    heldout = add_cameras("heldout", orbit_poses(args.heldout_views, target=target, distance=args.distance,
                                                 elevations_deg=HELDOUT_ELEVATIONS_DEG, azimuth_offset_deg=offset))

    seconds = {"original": render_split(train, out / "original", args.size),
               "heldout_original": render_split(heldout, out / "heldout_original", args.size)}
    if args.knowledge:
        seconds["knowledge"] = write_knowledge(train, out / "original", args.size, args.edit_object, out)
    original_color = next(spec.color for spec in built.spec.objects if spec.name == args.edit_object)
    recolor_object(args.edit_object, args.edit_color)
    seconds["edited_gt"] = render_split(train, out / "edited_gt", args.size)
    seconds["heldout_edited"] = render_split(heldout, out / "heldout_edited", args.size)

    frames = 2 * (len(train) + len(heldout))
    total = time.perf_counter() - started
    info = {
        "benchmark": "consistency/render_dataset",
        "out": str(out),
        "train_views": len(train),
        "heldout_views": len(heldout),
        "size": args.size,
        "samples": args.samples,
        "distance": args.distance,
        "edit": {"object": args.edit_object, "from_color": list(original_color), "to_color": list(args.edit_color)},
        "frames": frames,
        "render_seconds": {name: round(value, 3) for name, value in seconds.items()},
        "seconds_per_frame": round(sum(seconds.values()) / frames, 4),
        "total_seconds": round(total, 3),
        "device": "cpu (Cycles)",
    }
    (out / DATASET_FILE).write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
