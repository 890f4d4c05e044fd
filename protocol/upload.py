"""Chunked scene upload: splitting images into chunks (sender) and assembling them bit-exactly (receiver)."""

from __future__ import annotations

import bisect
import hashlib
import mmap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError
from .messages.scene import (
    DTYPE_SIZES,
    MESH_CORNER_FLOATS,
    AuxImage,
    AuxRole,
    ChunkPiece,
    ImageInfo,
    SceneBeginRequest,
    SceneChunkRequest,
    SceneEndRequest,
    SurfaceMesh,
)
from .schema import encode
from .signing import BufferLike

DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RawImage:
    """An image as raw bytes plus their layout; no numpy needed (but see :meth:`from_array`)."""

    data: memoryview
    info: ImageInfo

    @classmethod
    def from_bytes(cls, data: BufferLike, dtype: str, shape: Sequence[int]) -> RawImage:
        info = ImageInfo(dtype, list(shape))  # type: ignore[arg-type]  # checked by validate below
        if dtype not in DTYPE_SIZES:
            raise ValidationError(f"unsupported dtype {dtype!r}; use one of {sorted(DTYPE_SIZES)}", field="dtype")
        info.validate("image")
        view = memoryview(data).cast("B")
        if view.nbytes != info.nbytes:
            raise ValidationError(f"{view.nbytes} bytes, {dtype} {list(shape)} needs {info.nbytes}", field="data")
        return cls(view, info)

    @classmethod
    def from_encoded(cls, data: BufferLike, encoding: str, shape: Sequence[int], dtype: str = "uint8") -> RawImage:
        """A PNG / JPEG file's bytes, for an image of ``shape`` (the receiver decodes and checks it): what a renderer
        wrote travels compressed, and the sender never decodes it."""
        view = memoryview(data).cast("B")
        info = ImageInfo(dtype, list(shape), encoding, view.nbytes)  # type: ignore[arg-type]  # checked below
        if encoding not in ("png", "jpeg"):
            raise ValidationError(f"unsupported encoding {encoding!r}; use png or jpeg", field="encoding")
        if dtype not in DTYPE_SIZES:
            raise ValidationError(f"unsupported dtype {dtype!r}; use one of {sorted(DTYPE_SIZES)}", field="dtype")
        info.validate("image")
        return cls(view, info)

    @classmethod
    def from_array(cls, array: Any) -> RawImage:
        """From a C-contiguous numpy-like array (``.dtype.name``, ``.shape``, buffer protocol): zero-copy."""
        if not getattr(getattr(array, "flags", None), "c_contiguous", True):
            raise ValidationError("array must be C-contiguous (use numpy.ascontiguousarray)", field="data")
        return cls.from_bytes(memoryview(array), str(array.dtype.name), tuple(array.shape))


@dataclass(frozen=True)
class AuxUpload:
    """An auxiliary image to upload with a scene (see :class:`protocol.messages.AuxImage`)."""

    camera_index: int
    role: AuxRole
    image: RawImage


@dataclass(frozen=True)
class MeshUpload:
    """A surface to upload with a scene (see :class:`protocol.messages.SurfaceMesh`): ``data`` holds
    ``float32 [triangles, 3, 5]`` (``x y z u v`` per corner, little-endian)."""

    name: str
    data: memoryview
    object_name: str = ""

    @classmethod
    def from_array(cls, name: str, corners: Any, object_name: str = "") -> MeshUpload:
        """From a C-contiguous float32 numpy-like array of shape ``[triangles, 3, 5]`` (zero-copy)."""
        shape = tuple(getattr(corners, "shape", ()))
        if str(getattr(getattr(corners, "dtype", None), "name", "")) != "float32" or len(shape) != 3 \
                or shape[1:] != (3, MESH_CORNER_FLOATS) or not getattr(corners.flags, "c_contiguous", False):
            raise ValidationError(f"a mesh is a C-contiguous float32 [triangles, 3, 5] array, got "
                                  f"{getattr(corners, 'dtype', type(corners))} {list(shape)}", field="meshes")
        if shape[0] == 0:
            raise ValidationError(f"mesh {name!r} has no triangles", field="meshes")
        return cls(name, memoryview(corners).cast("B"), object_name)

    @property
    def info(self) -> SurfaceMesh:
        return SurfaceMesh(self.name, self.data.nbytes // (3 * MESH_CORNER_FLOATS * 4), self.object_name)


def scene_sha256(images: Sequence[RawImage | MeshUpload | BufferLike]) -> str:
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.data if isinstance(image, (RawImage, MeshUpload)) else image)
    return digest.hexdigest()


def plan_chunks(
    images: Sequence[RawImage | MeshUpload], upload_id: str, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[SceneChunkRequest, list[memoryview]]]:
    """Chunk requests of at most ``max_chunk_bytes`` each, as (content, zero-copy buffers) in upload order.

    Small images share a chunk; an image larger than a chunk is split across several.
    """
    if max_chunk_bytes < 1:
        raise ValueError("max_chunk_bytes must be >= 1")
    pieces: list[ChunkPiece] = []
    buffers: list[memoryview] = []
    room = max_chunk_bytes
    for index, image in enumerate(images):
        offset = 0
        while offset < image.data.nbytes:
            take = min(room, image.data.nbytes - offset)
            pieces.append(ChunkPiece(image_index=index, offset=offset, nbytes=take))
            buffers.append(image.data[offset : offset + take])
            offset += take
            room -= take
            if room == 0 or len(pieces) == 4096:
                yield SceneChunkRequest(upload_id=upload_id, pieces=pieces), buffers
                pieces, buffers, room = [], [], max_chunk_bytes
    if pieces:
        yield SceneChunkRequest(upload_id=upload_id, pieces=pieces), buffers


#: Most separate (non-touching) byte ranges of one image an upload may hold. A client sending pieces in order (as
#: ``plan_chunks`` does) always has one; the bound keeps a hostile upload of scattered 1-byte pieces cheap.
MAX_RANGES_PER_IMAGE = 1024


class _Ranges:
    """Disjoint, sorted byte ranges received for one image (pieces may be resent or overlap); O(log n) to find
    where a piece goes, at most :data:`MAX_RANGES_PER_IMAGE` ranges."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.covered = 0

    def check(self, start: int, end: int, field: str) -> None:
        """Raise unless adding ``[start, end)`` keeps the ranges within :data:`MAX_RANGES_PER_IMAGE`."""
        first, last = bisect.bisect_left(self.ends, start), bisect.bisect_right(self.starts, end)
        if first == last and len(self.starts) >= MAX_RANGES_PER_IMAGE:
            raise ValidationError(f"more than {MAX_RANGES_PER_IMAGE} separate byte ranges of one image: send each "
                                  "image's pieces in order", field=field)

    def add(self, start: int, end: int) -> None:
        first = bisect.bisect_left(self.ends, start)  # first range ending at or after start (touching merges)
        last = bisect.bisect_right(self.starts, end)  # ranges before this one start at or before end
        if first < last:
            start, end = min(start, self.starts[first]), max(end, self.ends[last - 1])
            self.covered -= sum(b - a for a, b in zip(self.starts[first:last], self.ends[first:last]))
        self.starts[first:last] = [start]
        self.ends[first:last] = [end]
        self.covered += end - start

    @property
    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends))


Allocator = Callable[[int, "ImageInfo | SurfaceMesh"], Any]


def _allocate_in_memory(index: int, info: ImageInfo | SurfaceMesh) -> mmap.mmap:
    """Anonymous memory the kernel fills with zero pages only as they are written: memory follows the bytes that
    arrived, not the size a begin request declared (a ``bytearray`` would zero-fill all of it at once)."""
    return mmap.mmap(-1, info.nbytes)


class SceneAssembler:
    """Receiver side of one upload: writes chunk pieces into per-image buffers and checks completeness + SHA-256.

    ``allocate(index, info)`` returns a writable buffer of ``info.nbytes`` bytes per image (default: anonymous mmap; a
    job directory can pass ``numpy.memmap`` or an ``mmap`` to land images on disk). Each image is allocated when its
    first piece arrives, so a begin request alone (which only declares sizes) costs no memory. Once :meth:`finish`
    has been called the upload is closed: later chunks and a second finish are refused.
    """

    def __init__(self, begin: SceneBeginRequest, allocate: Allocator = _allocate_in_memory) -> None:
        self.begin = begin
        self._allocate = allocate
        self.infos = begin.all_parts
        """Layout of every part in upload order (main images, auxiliary ones, then meshes)."""
        self.images: list[Any] = [None] * len(self.infos)
        self._ranges = [_Ranges() for _ in self.infos]
        self.ended = False

    @property
    def expected_bytes(self) -> int:
        return self.begin.total_bytes

    @property
    def received_bytes(self) -> int:
        return sum(r.covered for r in self._ranges)

    def add_chunk(self, chunk: SceneChunkRequest, buffers: Sequence[BufferLike]) -> int:
        """Store a chunk's pieces (all checked before any is written); return the bytes received so far."""
        if self.ended:
            raise ValidationError(f"upload {self.begin.upload_id!r} has ended: it takes no more chunks",
                                  field="content.upload_id")
        if chunk.upload_id != self.begin.upload_id:
            raise ValidationError(f"belongs to upload {chunk.upload_id!r}, not this one", field="content.upload_id")
        if len(buffers) != len(chunk.pieces):
            raise ValidationError(f"{len(chunk.pieces)} pieces but {len(buffers)} buffers", field="buffers")
        for i, (piece, buffer) in enumerate(zip(chunk.pieces, buffers)):
            path = f"content.pieces[{i}]"
            if piece.image_index >= len(self.images):
                raise ValidationError(
                    f"no image {piece.image_index} (scene has {len(self.images)})", field=f"{path}.image_index"
                )
            size = self.infos[piece.image_index].nbytes
            if piece.offset + piece.nbytes > size:
                raise ValidationError(
                    f"bytes {piece.offset}..{piece.offset + piece.nbytes} beyond image size {size}", field=f"{path}.nbytes"
                )
            if memoryview(buffer).nbytes != piece.nbytes:
                raise ValidationError(f"buffer has {memoryview(buffer).nbytes} bytes", field=f"buffers[{i}]")
            self._ranges[piece.image_index].check(piece.offset, piece.offset + piece.nbytes, path)
        for piece, buffer in zip(chunk.pieces, buffers):
            if self.images[piece.image_index] is None:
                self.images[piece.image_index] = self._allocate(piece.image_index, self.infos[piece.image_index])
            target = memoryview(self.images[piece.image_index]).cast("B")
            target[piece.offset : piece.offset + piece.nbytes] = memoryview(buffer).cast("B")
            self._ranges[piece.image_index].add(piece.offset, piece.offset + piece.nbytes)
        return self.received_bytes

    def finish(self, end: SceneEndRequest) -> None:
        """Raise :class:`ValidationError` unless every byte arrived and the SHA-256 matches. Closes the upload
        either way: it ends exactly once (:meth:`close`, then :meth:`verify`)."""
        self.close(end)
        self.verify(end)

    def close(self, end: SceneEndRequest) -> None:
        """End the upload: no chunk is taken after this, and a second end is refused. Cheap (a receiver calls it
        where chunks arrive, then may :meth:`verify` elsewhere)."""
        if end.upload_id != self.begin.upload_id:
            raise ValidationError(f"belongs to upload {end.upload_id!r}, not this one", field="content.upload_id")
        if self.ended:
            raise ValidationError(f"upload {self.begin.upload_id!r} has already ended", field="content.upload_id")
        self.ended = True

    def verify(self, end: SceneEndRequest) -> None:
        """Completeness and SHA-256 of a closed upload."""
        for index, (ranges, info) in enumerate(zip(self._ranges, self.infos)):
            if ranges.covered != info.nbytes:
                raise ValidationError(
                    f"incomplete: {ranges.covered} of {info.nbytes} bytes received", field=f"images[{index}]"
                )
        actual = scene_sha256([memoryview(image) for image in self.images])
        if actual != end.sha256:
            raise ValidationError(f"checksum mismatch: received data hashes to {actual}", field="content.sha256")


def begin_request(
    upload_id: str, cameras: Sequence[Any], images: Sequence[RawImage], scene_name: str = "",
    aux: Sequence[AuxUpload] = (), meshes: Sequence[MeshUpload] = (), **metadata: Any
) -> SceneBeginRequest:
    """A validated ``scene_begin_request`` for these cameras, images, auxiliary images and meshes."""
    request = SceneBeginRequest(
        upload_id=upload_id,
        cameras=list(cameras),
        images=[image.info for image in images],
        scene_name=scene_name,
        metadata=dict(metadata),
        aux_images=[AuxImage(camera_index=item.camera_index, role=item.role, image=item.image.info) for item in aux],
        meshes=[mesh.info for mesh in meshes],
    )
    encode(request)  # raises ValidationError naming the field, as the server would
    return request
