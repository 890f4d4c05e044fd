"""Scene upload: cameras (nerfstudio convention) and raw images, in chunks.

A scene is sent as ``scene_begin_request`` (all cameras + one image descriptor per camera), any number of
``scene_chunk_request`` (pieces of images as binary buffers, any order, any split), then ``scene_end_request`` with a
SHA-256 over all image bytes in camera order. :mod:`protocol.upload` builds and assembles these.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ValidationError
from ..schema import bounded, limit
from ..signing import BufferLike
from .registry import expect_buffers, message

#: bytes per element of each image dtype the protocol accepts
DTYPE_SIZES: dict[str, int] = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}
Dtype = Literal["uint8", "uint16", "float16", "float32"]
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_id(value: str, path: str) -> None:
    """Ids become directory names on the server: letters, digits, ``_ . -``, at most 64, never ``.``/``..``."""
    if not ID_PATTERN.match(value) or value in (".", ".."):
        raise ValidationError("must be 1-64 characters of A-Z a-z 0-9 _ . - (and not '.' or '..')", field=path)


@dataclass(frozen=True)
class Camera:
    """One pinhole camera as in nerfstudio's ``transforms.json`` frames."""

    fl_x: float = field(metadata=limit(gt=0))
    """Focal length in pixels along x; finite and > 0."""
    fl_y: float = field(metadata=limit(gt=0))
    cx: float
    """Principal point in pixels (origin: top-left corner of the image)."""
    cy: float
    w: int = field(metadata=limit(ge=1, le=65536))
    """Image width in pixels."""
    h: int = field(metadata=limit(ge=1, le=65536))
    transform_matrix: list[list[float]]
    """4x4 camera-to-world, row-major, OpenGL/Blender camera axes (x right, y up, looking down -z): this is exactly
    Blender's ``camera.matrix_world``."""
    name: str = bounded("", max_len=512)
    """Optional label, e.g. the Blender camera or the original ``file_path``."""

    def validate(self, path: str) -> None:
        check_matrix4(self.transform_matrix, f"{path}.transform_matrix")


def check_matrix4(matrix: list[list[float]], path: str) -> None:
    if len(matrix) != 4 or any(len(row) != 4 for row in matrix):
        shape = [len(matrix), *sorted({len(row) for row in matrix})]
        raise ValidationError(f"must be 4x4, got rows/cols {shape}", field=path)
    for r, row in enumerate(matrix):
        for c, value in enumerate(row):
            if not math.isfinite(value):
                raise ValidationError(f"must be finite, got {value}", field=f"{path}[{r}][{c}]")
    if any(abs(a - b) > 1e-5 for a, b in zip(matrix[3], (0.0, 0.0, 0.0, 1.0))):
        raise ValidationError(f"last row must be [0, 0, 0, 1], got {matrix[3]}", field=f"{path}[3]")


Encoding = Literal["raw", "png", "jpeg"]
"""How an image's bytes travel: ``raw`` pixels as ``dtype``/``shape`` say, or a PNG / JPEG file (what a renderer or
camera wrote; the receiver decodes it and checks it has ``shape``)."""


@dataclass(frozen=True)
class ImageInfo:
    """How one image's bytes are laid out: C-contiguous ``shape`` of ``dtype`` (e.g. ``[h, w, 4]`` uint8), or an
    encoded file of an image of that shape (``encoding``, ``encoded_bytes``)."""

    dtype: Dtype
    shape: list[int] = field(metadata=limit(min_len=2, max_len=3))
    """``[h, w]`` or ``[h, w, c]`` with c in 1, 3, 4; row 0 is the TOP of the image."""
    encoding: Encoding = "raw"
    encoded_bytes: int | None = bounded(None, ge=1, le=1 << 34)
    """Size of the PNG / JPEG file (protocol 2.0); required unless ``raw``."""

    def validate(self, path: str) -> None:
        if any(d < 1 or d > 65536 for d in self.shape):
            raise ValidationError(f"dimensions must be in 1..65536, got {self.shape}", field=f"{path}.shape")
        if len(self.shape) == 3 and self.shape[2] not in (1, 3, 4):
            raise ValidationError(f"channels must be 1, 3 or 4, got {self.shape[2]}", field=f"{path}.shape[2]")
        if (self.encoding == "raw") != (self.encoded_bytes is None):
            raise ValidationError("an encoded image needs encoded_bytes, a raw one has none",
                                  field=f"{path}.encoded_bytes")

    @property
    def nbytes(self) -> int:
        """Bytes that travel: the file's size for an encoded image, else the raw pixels'."""
        if self.encoded_bytes is not None:
            return self.encoded_bytes
        return self.pixel_bytes

    @property
    def pixel_bytes(self) -> int:
        """Bytes of the decoded pixels."""
        count = DTYPE_SIZES[self.dtype]
        for dim in self.shape:
            count *= dim
        return count


AuxRole = Literal["target", "depth", "edit_mask"]
"""What an auxiliary image of a view is:

* ``target``: the ground-truth edited image of that view, used only by the SIMULATED editor (demos and benchmarks
  without model weights); real editors never see it. Stored as ``targets/<image>.png`` (``target_file_path``).
* ``depth``: the view's depth along the camera's axis (z-depth) in scene units, ``float32 [h, w]``, 0 where nothing
  was hit (protocol 2.0). Stored as nerfstudio does: 16-bit PNG in millimetres (``depth_file_path``).
* ``edit_mask``: where the edit may act (the selected objects), ``uint8 [h, w]``, 255 inside (protocol 2.0). Stored
  as ``edit_masks/<image>.png`` (``edit_mask_path``). Not nerfstudio's ``mask_path``, which leaves pixels out of
  training: the whole image still trains the NeRF; outside the mask each edited image keeps the original pixels.
"""
AUX_FOLDERS: dict[str, str] = {"target": "targets", "depth": "depth", "edit_mask": "edit_masks"}
"""Folder of each auxiliary role in a stored scene."""
AUX_FRAME_KEYS: dict[str, str] = {"target": "target_file_path", "depth": "depth_file_path",
                                  "edit_mask": "edit_mask_path"}
"""transforms.json frame key naming each auxiliary role's file (relative to the scene folder)."""
DEPTH_UNIT_SCALE = 1e-3
"""Depth PNGs hold millimetres (nerfstudio's ``depth_unit_scale_factor`` default)."""


@dataclass(frozen=True)
class AuxImage:
    """An extra per-view image uploaded with a scene; its bytes follow the main images in upload order."""

    camera_index: int = field(metadata=limit(ge=0))
    """The camera (index into ``cameras``) this image belongs to."""
    role: AuxRole
    image: ImageInfo
    """Layout of its bytes; ``shape[:2]`` must equal the camera's ``[h, w]``."""


MAX_MESH_TRIANGLES = 2_000_000
"""Most triangles one uploaded surface may have (80 bytes each: 160 MB)."""
MAX_MESHES = 64
"""Most surfaces one scene upload may carry."""
MESH_CORNER_FLOATS = 5
"""A mesh travels as ``float32 [triangles, 3, 5]``: per corner ``x, y, z`` (world space) and ``u, v``."""


@dataclass(frozen=True)
class SurfaceMesh:
    """A selected object's surface, for baking the edit onto it (protocol 2.1): its triangles in world space after
    modifiers, with the UV map the bake writes into, as ``float32 [triangles, 3, 5]`` (``x y z u v`` per corner).
    Its bytes follow the auxiliary images in upload order."""

    name: str = field(metadata=limit(min_len=1, max_len=256))
    """What the result is called: the client's key for the object (e.g. the Blender mesh the UVs belong to)."""
    triangles: int = field(metadata=limit(ge=1, le=MAX_MESH_TRIANGLES))
    object_name: str = bounded("", max_len=256)
    """The object as the user knows it (messages name it)."""

    def validate(self, path: str) -> None:
        if any(ch in self.name for ch in "/\\\0") or self.name.strip() in ("", ".", ".."):
            raise ValidationError("must not contain '/', '\\' or NUL, nor be '.' or '..'", field=f"{path}.name")

    @property
    def nbytes(self) -> int:
        return self.triangles * 3 * MESH_CORNER_FLOATS * 4


@message("scene_begin_request", "request")
@dataclass(frozen=True)
class SceneBeginRequest:
    upload_id: str
    """Client-chosen id of this upload (``[A-Za-z0-9_.-]{1,64}``); later chunks refer to it."""
    cameras: list[Camera] = field(metadata=limit(min_len=1, max_len=10000))
    images: list[ImageInfo] = field(metadata=limit(min_len=1, max_len=10000))
    """One descriptor per camera, same order; ``shape[:2]`` must equal ``[camera.h, camera.w]``."""
    scene_name: str = bounded("", max_len=256)
    metadata: dict[str, Any] = bounded({})
    """Free-form, stored with the scene (e.g. Blender file name, scene bounds)."""
    aux_images: list[AuxImage] = bounded([], max_len=10000)
    """Optional extra images per view (protocol 1.1); in chunk pieces, image ``len(images) + i`` is ``aux_images[i]``
    and the end request's SHA-256 covers them after the main images."""
    meshes: list[SurfaceMesh] = bounded([], max_len=MAX_MESHES)
    """The selected objects' surfaces, to bake the edit onto (protocol 2.1); their bytes come last, in this order."""

    def validate(self, path: str) -> None:
        check_id(self.upload_id, f"{path}.upload_id")
        if len({mesh.name for mesh in self.meshes}) != len(self.meshes):
            raise ValidationError("two meshes share a name", field=f"{path}.meshes")
        if len(self.images) != len(self.cameras):
            raise ValidationError(
                f"image count ({len(self.images)}) != camera count ({len(self.cameras)})", field=f"{path}.images"
            )
        for index, (camera, image) in enumerate(zip(self.cameras, self.images)):
            if image.shape[:2] != [camera.h, camera.w]:
                raise ValidationError(
                    f"shape {image.shape[:2]} does not match camera {index} (h, w) = ({camera.h}, {camera.w})",
                    field=f"{path}.images[{index}].shape",
                )
        seen: set[tuple[int, str]] = set()
        for index, aux in enumerate(self.aux_images):
            where = f"{path}.aux_images[{index}]"
            if aux.camera_index >= len(self.cameras):
                raise ValidationError(f"no camera {aux.camera_index} (scene has {len(self.cameras)})",
                                      field=f"{where}.camera_index")
            if (aux.camera_index, aux.role) in seen:
                raise ValidationError(f"camera {aux.camera_index} already has a {aux.role!r} image", field=where)
            seen.add((aux.camera_index, aux.role))
            camera = self.cameras[aux.camera_index]
            single = len(aux.image.shape) == 2 or aux.image.shape[2] == 1
            if aux.role == "depth" and (aux.image.dtype not in ("float32", "float16", "uint16") or not single):
                raise ValidationError(f"a depth image is one float32 (metres) or uint16 (millimetres) channel, got "
                                      f"{aux.image.dtype} {aux.image.shape}", field=f"{where}.image")
            if aux.role == "edit_mask" and (aux.image.dtype != "uint8" or not single):
                raise ValidationError(f"an edit mask is one uint8 channel, got {aux.image.dtype} {aux.image.shape}",
                                      field=f"{where}.image")
            if aux.image.shape[:2] != [camera.h, camera.w]:
                raise ValidationError(f"shape {aux.image.shape[:2]} does not match camera {aux.camera_index} "
                                      f"(h, w) = ({camera.h}, {camera.w})", field=f"{where}.image.shape")

    @property
    def all_images(self) -> list[ImageInfo]:
        """Every image in upload order: the main images (one per camera), then the auxiliary ones."""
        return [*self.images, *(aux.image for aux in self.aux_images)]

    @property
    def all_parts(self) -> list[ImageInfo | SurfaceMesh]:
        """Everything whose bytes travel, in upload order (piece ``image_index`` counts over these): the images,
        then the meshes."""
        return [*self.all_images, *self.meshes]

    @property
    def total_bytes(self) -> int:
        return sum(part.nbytes for part in self.all_parts)


@message("scene_begin_reply", "reply")
@dataclass(frozen=True)
class SceneBeginReply:
    upload_id: str
    expected_bytes: int = field(metadata=limit(ge=0))
    max_chunk_bytes: int = field(metadata=limit(ge=1))
    """Send buffers no larger than this."""


@dataclass(frozen=True)
class ChunkPiece:
    """Buffer ``i`` of the chunk holds bytes ``[offset, offset + len(buffer))`` of image ``image_index``."""

    image_index: int = field(metadata=limit(ge=0))
    offset: int = field(metadata=limit(ge=0))
    nbytes: int = field(metadata=limit(ge=1))


@message("scene_chunk_request", "request")
@dataclass(frozen=True)
class SceneChunkRequest:
    upload_id: str
    pieces: list[ChunkPiece] = field(metadata=limit(min_len=1, max_len=4096))

    def validate(self, path: str) -> None:
        check_id(self.upload_id, f"{path}.upload_id")

    def check_buffers(self, buffers: list[BufferLike]) -> None:
        expect_buffers(buffers, [piece.nbytes for piece in self.pieces])


@message("scene_chunk_reply", "reply")
@dataclass(frozen=True)
class SceneChunkReply:
    upload_id: str
    received_bytes: int = field(metadata=limit(ge=0))
    """Distinct bytes received so far (a resent piece is not counted twice)."""
    expected_bytes: int = field(metadata=limit(ge=0))


@message("scene_end_request", "request")
@dataclass(frozen=True)
class SceneEndRequest:
    upload_id: str
    sha256: str = field(metadata=limit(min_len=64, max_len=64))
    """Hex SHA-256 of all image bytes concatenated in camera order; the server compares before accepting."""

    def validate(self, path: str) -> None:
        check_id(self.upload_id, f"{path}.upload_id")
        if any(ch not in "0123456789abcdef" for ch in self.sha256):
            raise ValidationError("must be 64 lowercase hex digits", field=f"{path}.sha256")


@message("scene_end_reply", "reply")
@dataclass(frozen=True)
class SceneEndReply:
    scene_id: str
    """Id to pass to ``edit_start_request``."""
    image_count: int = field(metadata=limit(ge=1))
    total_bytes: int = field(metadata=limit(ge=0))
    extra: dict[str, Any] = field(default_factory=dict)
