"""COLMAP sparse models (``cameras`` + ``images``, text or binary) as captures, converted exactly as nerfstudio's
``ns-process-data`` does (``nerfstudio.process_data.colmap_utils.colmap_to_json``): camera-to-world is the inverse of
COLMAP's world-to-camera, the camera's y and z axes flip (OpenCV -> OpenGL), and the world's axes are re-ordered
(x, z, -y) so that COLMAP's usual "y down" world becomes z up; that re-ordering is recorded as
``applied_transform``. Images are looked up in the ``images/`` folder nearest above the model (``DATA/images`` for ``DATA/sparse/0``).

Supported camera models: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV (the distortion goes into
``k1, k2, p1, p2`` as nerfstudio writes it).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .model import Capture, CaptureError, CaptureFrame, Intrinsics

#: COLMAP model id -> (name, number of parameters)
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
          5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
          9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
APPLIED_TRANSFORM = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-0.0, -1.0, -0.0, -0.0]]
"""nerfstudio's world re-ordering of COLMAP models (rows of ``p_new = A p_colmap``)."""


@dataclass(frozen=True)
class ColmapCamera:
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass(frozen=True)
class ColmapImage:
    qvec: tuple[float, float, float, float]
    """World-to-camera rotation as a unit quaternion (w, x, y, z)."""
    tvec: tuple[float, float, float]
    camera_id: int
    name: str


def find_model(folder: Path) -> Path | None:
    """The folder holding ``cameras.bin|txt`` + ``images.bin|txt``: ``folder`` itself, ``sparse/0`` or ``sparse``."""
    for candidate in (folder, folder / "sparse" / "0", folder / "sparse", folder / "colmap" / "sparse" / "0"):
        for suffix in (".bin", ".txt"):
            if (candidate / f"cameras{suffix}").is_file() and (candidate / f"images{suffix}").is_file():
                return candidate
    return None


def read_colmap(folder: Path) -> Capture:
    """The capture of a COLMAP model found in ``folder`` (see :func:`find_model`)."""
    model = find_model(folder)
    if model is None:
        raise CaptureError(str(folder), "no COLMAP model (cameras.bin/.txt and images.bin/.txt in it, in sparse/0 or "
                           "in sparse)")
    binary = (model / "cameras.bin").is_file() and (model / "images.bin").is_file()
    cameras = read_cameras_binary(model / "cameras.bin") if binary else read_cameras_text(model / "cameras.txt")
    images = read_images_binary(model / "images.bin") if binary else read_images_text(model / "images.txt")
    # the dataset folder: the nearest one (the model's or up to three above) that has the images/ folder
    root = next((parent for parent in (model, *list(model.parents)[:3]) if (parent / "images").is_dir()), model)
    frames = []
    for image_id in sorted(images, key=lambda i: images[i].name):
        image = images[image_id]
        camera = cameras.get(image.camera_id)
        if camera is None:
            raise CaptureError(str(model), f"image {image.name!r} uses camera {image.camera_id}, which is not in cameras")
        intrinsics, distortion = _intrinsics(camera, f"{model}: camera {image.camera_id}")
        frames.append(CaptureFrame(f"images/{image.name}", intrinsics, _opengl_c2w(image),
                                   {**distortion, "colmap_im_id": image_id}))
    if not frames:
        raise CaptureError(str(model), "the model has no registered images")
    return Capture(frames, camera_model="OPENCV", extra={"applied_transform": APPLIED_TRANSFORM}, layout="colmap",
                   source=root)


def _intrinsics(camera: ColmapCamera, where: str) -> tuple[Intrinsics, dict[str, float]]:
    p = camera.params
    if camera.model not in SUPPORTED:
        raise CaptureError(str(where), f"camera model {camera.model} is not supported (use one of {', '.join(SUPPORTED)}; "
                           "undistort the images with `colmap image_undistorter` for others)")
    if camera.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    else:
        fx, fy, cx, cy = p[0], p[1], p[2], p[3]
    k1 = p[3] if camera.model in ("SIMPLE_RADIAL", "RADIAL") else p[4] if camera.model == "OPENCV" else 0.0
    k2 = p[4] if camera.model == "RADIAL" else p[5] if camera.model == "OPENCV" else 0.0
    p1, p2 = (p[6], p[7]) if camera.model == "OPENCV" else (0.0, 0.0)
    if fx <= 0 or fy <= 0 or camera.width < 1 or camera.height < 1:
        raise CaptureError(str(where), f"focal length and size must be positive, got {fx}, {fy}, "
                           f"{camera.width}x{camera.height}")
    return (Intrinsics(fx, fy, cx, cy, camera.width, camera.height),
            {"k1": k1, "k2": k2, "p1": p1, "p2": p2})


def _rotation(qvec: tuple[float, float, float, float]) -> list[list[float]]:
    w, x, y, z = qvec
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if not norm or not math.isfinite(norm):
        raise CaptureError("images", f"rotation quaternion {qvec} is not a rotation")
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return [[1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * z * x + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * z * x - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y]]


def _opengl_c2w(image: ColmapImage) -> list[list[float]]:
    rotation = _rotation(image.qvec)
    transposed = [[rotation[j][i] for j in range(3)] for i in range(3)]  # camera-to-world rotation R^T
    center = [-sum(transposed[i][k] * image.tvec[k] for k in range(3)) for i in range(3)]  # -R^T t
    # OpenCV -> OpenGL camera axes: the y and z columns flip
    c2w = [[transposed[i][0], -transposed[i][1], -transposed[i][2], center[i]] for i in range(3)]
    # nerfstudio's world re-ordering (APPLIED_TRANSFORM): rows x, z, -y
    return [c2w[0], c2w[2], [-value for value in c2w[1]], [0.0, 0.0, 0.0, 1.0]]


# -- COLMAP's files ---------------------------------------------------------------------------------------------


def _read(handle: BinaryIO, fmt: str, where: Path) -> tuple:  # type: ignore[type-arg]
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise CaptureError(str(where), "truncated file")
    return struct.unpack(fmt, data)


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    with open(path, "rb") as handle:
        (count,) = _read(handle, "<Q", path)
        for _ in range(count):
            camera_id, model_id, width, height = _read(handle, "<iiQQ", path)
            if model_id not in MODELS:
                raise CaptureError(str(path), f"camera {camera_id} has unknown model id {model_id}")
            name, num_params = MODELS[model_id]
            cameras[camera_id] = ColmapCamera(name, width, height, _read(handle, f"<{num_params}d", path))
    return cameras


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    images = {}
    with open(path, "rb") as handle:
        (count,) = _read(handle, "<Q", path)
        for _ in range(count):
            image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = _read(handle, "<i7di", path)
            name = bytearray()
            while (char := handle.read(1)) not in (b"\x00", b""):
                name += char
            (points,) = _read(handle, "<Q", path)
            handle.seek(points * 24, 1)  # x, y (double) and point3D id (int64) per 2D point: not needed
            images[image_id] = ColmapImage((qw, qx, qy, qz), (tx, ty, tz), camera_id, name.decode("utf-8"))
    return images


def _text_lines(path: Path) -> list[list[str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CaptureError(str(path), f"cannot read ({error})") from None
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, parts in enumerate(_text_lines(path)):
        try:
            cameras[int(parts[0])] = ColmapCamera(parts[1], int(parts[2]), int(parts[3]),
                                                  tuple(float(v) for v in parts[4:]))
        except (IndexError, ValueError):
            raise CaptureError(str(path), f"camera line {number + 1} is not 'ID MODEL WIDTH HEIGHT PARAMS...'") from None
    return cameras


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    """Every other non-comment line describes an image; the ones between list its 2D points (possibly empty, so
    blank lines count here)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise CaptureError(str(path), f"cannot read ({error})") from None
    images = {}
    for number, line in enumerate(lines[0::2]):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts[1:8]]
            images[int(parts[0])] = ColmapImage((values[0], values[1], values[2], values[3]),
                                                (values[4], values[5], values[6]), int(parts[8]),
                                                " ".join(parts[9:]))
        except (IndexError, ValueError):
            raise CaptureError(str(path), f"image line {2 * number + 1} is not 'ID QW QX QY QZ TX TY TZ CAMERA_ID "
                               "NAME'") from None
    return images
