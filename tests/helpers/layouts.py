"""Small captures in the layouts people bring, written here independently of the ``capture`` package under test:
NeRF-synthetic / BlenderNeRF, instant-ngp, COLMAP (text and binary). Each is a ring of cameras around a few spheres
(rendered by :func:`tests.helpers.scenes.render_spheres`), so a NeRF can train on it.

Conventions, as each format's own documentation and writers define them:
* NeRF-synthetic and instant-ngp: ``transform_matrix`` is camera-to-world with OpenGL axes; the focal length is
  ``0.5 * W / tan(0.5 * camera_angle_x)``; the principal point is the image centre unless ``cx``/``cy`` say otherwise.
* COLMAP: each image stores world-to-camera ``R, t`` (quaternion ``qw qx qy qz``, OpenCV axes: x right, y down, z
  forward); a world point ``X`` projects to ``(fx * x / z + cx, fy * y / z + cy)`` with ``(x, y, z) = R X + t``.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers.scenes import DEFAULT_SPHERES, look_at, render_spheres

CENTER = np.array([0.5, -0.3, 0.4])
SCALE = 1.5


@dataclass
class Written:
    folder: Path
    c2w: list[np.ndarray]
    """OpenGL camera-to-world of each training view, in the file's world frame."""
    focal: tuple[float, float]
    principal: tuple[float, float]
    size: tuple[int, int]


def ring(count: int) -> list[np.ndarray]:
    poses = []
    for index in range(count):
        angle = 2 * math.pi * index / count
        eye = CENTER + SCALE * 1.4 * np.array([math.cos(angle), math.sin(angle), 0.55 + 0.1 * (index % 2)])
        poses.append(look_at(eye, CENTER))
    return poses


def write_png(path: Path, rgb: np.ndarray) -> None:
    """``H W 3`` uint8 as an 8-bit RGB PNG, with the standard library alone (Blender's test environments have no
    Pillow)."""
    height, width = rgb.shape[:2]

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(rgb, dtype=np.uint8))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _render(path: Path, c2w: np.ndarray, width: int, height: int, focal: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = render_spheres(c2w, width, height, focal, CENTER, SCALE, DEFAULT_SPHERES)
    if path.suffix == ".jpg":
        from PIL import Image  # JPEG only in the backend environment

        Image.fromarray(pixels).save(path, quality=95)
    else:
        write_png(path, pixels)


def write_nerf_synthetic(folder: Path, *, train: int = 8, test: int = 2, size: int = 32) -> Written:
    """``transforms_train.json`` / ``transforms_test.json`` with ``camera_angle_x`` and extensionless paths."""
    angle = 0.8
    focal = 0.5 * size / math.tan(0.5 * angle)
    poses = ring(train + test)
    for split, chosen in (("train", poses[:train]), ("test", poses[train:])):
        frames = []
        for index, c2w in enumerate(chosen):
            _render(folder / split / f"r_{index}.png", c2w, size, size, focal)
            frames.append({"file_path": f"./{split}/r_{index}", "rotation": 0.0, "transform_matrix": c2w.tolist()})
        (folder / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return Written(folder, poses[:train], (focal, focal), (size / 2, size / 2), (size, size))


def write_instant_ngp(folder: Path, *, views: int = 8, width: int = 36, height: int = 28, suffix: str = ".jpg") -> Written:
    """instant-ngp's ``transforms.json``: ``camera_angle_x``, an off-centre principal point, ``aabb_scale``,
    ``scale`` / ``offset`` (instant-ngp's own normalisation), JPEG images named with their extension."""
    angle = 0.9
    focal = 0.5 * width / math.tan(0.5 * angle)
    cx, cy = width / 2 + 1.5, height / 2 - 1.0
    poses = ring(views)
    frames = []
    for index, c2w in enumerate(poses):
        _render(folder / "images" / f"{index:04d}{suffix}", c2w, width, height, focal)
        frames.append({"file_path": f"images/{index:04d}{suffix}", "sharpness": 50.0, "transform_matrix": c2w.tolist()})
    (folder / "transforms.json").write_text(json.dumps({
        "camera_angle_x": angle, "cx": cx, "cy": cy, "aabb_scale": 4, "scale": 0.33, "offset": [0.5, 0.5, 0.5],
        "frames": frames}))
    return Written(folder, poses, (focal, focal), (cx, cy), (width, height))


def _qvec(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2 * math.sqrt(trace + 1)
        return s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    i = int(np.argmax(np.diag(m)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * math.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
    q = [0.0, 0.0, 0.0, 0.0]
    q[0] = (m[k, j] - m[j, k]) / s
    q[1 + i] = s / 4
    q[1 + j] = (m[j, i] + m[i, j]) / s
    q[1 + k] = (m[k, i] + m[i, k]) / s
    return q[0], q[1], q[2], q[3]


def colmap_extrinsics(c2w_gl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``R, t`` in COLMAP's OpenCV axes for an OpenGL camera-to-world in the same world."""
    c2w_cv = c2w_gl.copy()
    c2w_cv[:3, 1:3] *= -1
    w2c = np.linalg.inv(c2w_cv)
    return w2c[:3, :3], w2c[:3, 3]


def write_colmap(folder: Path, *, binary: bool, views: int = 8, width: int = 40, height: int = 30) -> Written:
    """``sparse/0/{cameras,images,points3D}.{bin|txt}`` and ``images/``: one PINHOLE and one SIMPLE_RADIAL camera."""
    fx, fy, cx, cy = 38.0, 37.0, width / 2 + 0.7, height / 2 - 0.4
    cameras = {1: (1, 1, (fx, fy, cx, cy)), 2: (2, 2, (fx, cx, cy, 0.0))}  # id: (id, model id, params)
    poses = ring(views)
    model = folder / "sparse" / "0"
    model.mkdir(parents=True)
    images = []
    for index, c2w in enumerate(poses):
        camera_id = 1 if index % 2 == 0 else 2
        name = f"img_{index:03d}.png"
        # pixels rendered with a centred square-pixel camera (render_spheres' model): close enough for a NeRF to
        # train on; the cameras under test are checked by projecting points, not by pixels
        _render(folder / "images" / name, c2w, width, height, fx)
        rotation, translation = colmap_extrinsics(c2w)
        images.append((index + 1, _qvec(rotation), translation, camera_id, name))
    if binary:
        with open(model / "cameras.bin", "wb") as handle:
            handle.write(struct.pack("<Q", len(cameras)))
            for camera_id, model_id, params in cameras.values():
                handle.write(struct.pack("<iiQQ", camera_id, model_id, width, height))
                handle.write(struct.pack(f"<{len(params)}d", *params))
        with open(model / "images.bin", "wb") as handle:
            handle.write(struct.pack("<Q", len(images)))
            for image_id, qvec, tvec, camera_id, name in images:
                handle.write(struct.pack("<i7di", image_id, *qvec, *tvec, camera_id))
                handle.write(name.encode() + b"\x00")
                handle.write(struct.pack("<Q", 1) + struct.pack("<ddq", 3.0, 4.0, -1))  # one 2D point
        with open(model / "points3D.bin", "wb") as handle:  # two points (nerfstudio makes a sparse point cloud)
            handle.write(struct.pack("<Q", 2))
            for point_id, xyz in ((1, CENTER), (2, CENTER + 0.1)):
                handle.write(struct.pack("<Q3d3BdQ", point_id, *xyz, 200, 100, 50, 0.5, 1) + struct.pack("<ii", 1, 0))
    else:
        names = {1: "PINHOLE", 2: "SIMPLE_RADIAL"}
        (model / "cameras.txt").write_text("# Camera list\n" + "".join(
            f"{camera_id} {names[model_id]} {width} {height} {' '.join(map(str, params))}\n"
            for camera_id, model_id, params in cameras.values()))
        lines = ["# Image list with two lines of data per image:"]
        for image_id, qvec, tvec, camera_id, name in images:
            numbers = " ".join(repr(float(value)) for value in (*qvec, *tvec))
            lines.append(f"{image_id} {numbers} {camera_id} {name}")
            lines.append("3.0 4.0 -1" if image_id % 2 else "")  # 2D points; some images have none
        (model / "images.txt").write_text("\n".join(lines) + "\n")
        (model / "points3D.txt").write_text("# 3D point list\n" + "".join(
            f"{point_id} {' '.join(map(repr, xyz.tolist()))} 200 100 50 0.5 1 0\n"
            for point_id, xyz in ((1, CENTER), (2, CENTER + 0.1))))
    return Written(folder, poses, (fx, fy), (cx, cy), (width, height))
