"""Chunk planning and bit-exact assembly, without sockets."""

from __future__ import annotations

import os

import numpy as np
import pytest

import protocol
from protocol import messages as m
from protocol.upload import RawImage, SceneAssembler, begin_request, plan_chunks, scene_sha256

from .samples import camera


def scene(n: int = 3, h: int = 24, w: int = 32) -> tuple[list[m.Camera], list[RawImage], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 4), dtype=np.uint8) for _ in range(n)]
    arrays[1] = rng.random((h, w, 3), dtype=np.float32)  # mixed dtypes in one scene
    return [camera(w, h) for _ in range(n)], [RawImage.from_array(a) for a in arrays], arrays


@pytest.mark.parametrize("chunk_bytes", [1, 1000, 3072, 10**6])
def test_chunks_reassemble_bit_exact(chunk_bytes: int) -> None:
    cameras, images, arrays = scene(n=3, h=8, w=16) if chunk_bytes == 1 else scene()
    begin = begin_request("up", cameras, images)
    assembler = SceneAssembler(begin)
    chunks = list(plan_chunks(images, "up", chunk_bytes))
    assert all(sum(p.nbytes for p in c.pieces) <= chunk_bytes for c, _ in chunks)
    for content, buffers in reversed(chunks):  # any order
        assembler.add_chunk(content, buffers)
    assembler.finish(m.SceneEndRequest(upload_id="up", sha256=scene_sha256(images)))
    for array, received in zip(arrays, assembler.images):
        assert bytes(received) == array.tobytes()
    assert assembler.received_bytes == begin.total_bytes == sum(a.nbytes for a in arrays)


def test_resent_pieces_count_once_and_gaps_are_reported() -> None:
    cameras, images, _ = scene()
    assembler = SceneAssembler(begin_request("up", cameras, images))
    chunks = list(plan_chunks(images, "up", 1000))
    for content, buffers in chunks[:-1]:
        assembler.add_chunk(content, buffers)
        assembler.add_chunk(content, buffers)
    assert assembler.received_bytes == assembler.expected_bytes - sum(p.nbytes for p in chunks[-1][0].pieces)
    with pytest.raises(protocol.ValidationError, match="incomplete") as info:
        assembler.finish(m.SceneEndRequest(upload_id="up", sha256=scene_sha256(images)))
    assert info.value.field == "images[2]"


def test_corrupted_bytes_fail_the_checksum() -> None:
    cameras, images, _ = scene()
    assembler = SceneAssembler(begin_request("up", cameras, images))
    for content, buffers in plan_chunks(images, "up", 4096):
        buffers = [bytes(b) for b in buffers]
        if content.pieces[0].image_index == 1:
            buffers[0] = bytes([buffers[0][0] ^ 1]) + buffers[0][1:]
        assembler.add_chunk(content, buffers)
    with pytest.raises(protocol.ValidationError) as info:
        assembler.finish(m.SceneEndRequest(upload_id="up", sha256=scene_sha256(images)))
    assert info.value.field == "content.sha256"


def test_pieces_outside_the_scene_are_rejected_before_writing() -> None:
    cameras, images, _ = scene()
    assembler = SceneAssembler(begin_request("up", cameras, images))
    size = images[0].info.nbytes
    for piece, field in [(m.ChunkPiece(7, 0, 4), "content.pieces[1].image_index"),
                         (m.ChunkPiece(0, size - 2, 4), "content.pieces[1].nbytes")]:
        chunk = m.SceneChunkRequest(upload_id="up", pieces=[m.ChunkPiece(0, 0, 4), piece])
        with pytest.raises(protocol.ValidationError) as info:
            assembler.add_chunk(chunk, [b"good", b"evil"])
        assert info.value.field == field
    assert assembler.received_bytes == 0  # nothing written from a rejected chunk


def test_raw_image_checks_layout() -> None:
    with pytest.raises(protocol.ValidationError, match="needs 24"):
        RawImage.from_bytes(os.urandom(23), "uint8", [2, 4, 3])
    with pytest.raises(protocol.ValidationError, match="C-contiguous"):
        RawImage.from_array(np.zeros((4, 4, 3), np.uint8)[:, ::2])
    with pytest.raises(protocol.ValidationError, match="unsupported dtype"):
        RawImage.from_array(np.zeros((4, 4, 3), np.float64))
    with pytest.raises(protocol.ValidationError, match="image count"):
        begin_request("up", [camera()], [RawImage.from_array(np.zeros((24, 32, 3), np.uint8))] * 2)


def test_auxiliary_images_follow_the_main_images_and_reassemble_bit_exact() -> None:
    cameras, images, arrays = scene(n=3)
    target = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    aux = [protocol.AuxUpload(2, "target", RawImage.from_array(target))]
    begin = begin_request("up", cameras, images, "s", aux)
    assert [a.camera_index for a in begin.aux_images] == [2] and begin.aux_images[0].role == "target"
    assert begin.total_bytes == sum(a.nbytes for a in arrays) + target.nbytes
    in_order = [*images, aux[0].image]
    assembler = SceneAssembler(begin)
    for content, buffers in plan_chunks(in_order, "up", 1000):
        assembler.add_chunk(content, buffers)
    assembler.finish(m.SceneEndRequest(upload_id="up", sha256=scene_sha256(in_order)))
    assert bytes(assembler.images[3]) == target.tobytes()


@pytest.mark.parametrize(("aux", "field", "message"), [
    ([(3, (24, 32))], "content.aux_images[0].camera_index", "no camera 3"),
    ([(0, (24, 32)), (0, (24, 32))], "content.aux_images[1]", "already has a 'target'"),
    ([(1, (12, 32))], "content.aux_images[0].image.shape", "does not match camera 1"),
])
def test_auxiliary_images_must_belong_to_one_camera_each_and_match_its_size(aux, field, message) -> None:
    cameras, images, _ = scene(n=3)
    uploads = [protocol.AuxUpload(index, "target", RawImage.from_array(np.zeros((*shape, 3), np.uint8)))
               for index, shape in aux]
    with pytest.raises(protocol.ValidationError, match=message) as info:
        begin_request("up", cameras, images, "s", uploads)
    assert info.value.field == field


def test_an_unknown_auxiliary_role_is_refused_by_the_schema() -> None:
    cameras, images, _ = scene(n=2)
    content = protocol.schema.encode(begin_request("up", cameras, images))
    assert isinstance(content, dict)
    content["aux_images"] = [{"camera_index": 0, "role": "depth-of-field", "image": {"dtype": "uint8",
                                                                                     "shape": [24, 32, 3]}}]
    with pytest.raises(protocol.ValidationError) as info:
        protocol.schema.decode(m.SceneBeginRequest, content)
    assert info.value.field == "content.aux_images[0].role"


def test_meshes_follow_the_auxiliary_images_and_reassemble_bit_exact() -> None:
    cameras, images, arrays = scene(n=2)
    corners = np.random.default_rng(2).random((7, 3, 5)).astype(np.float32)
    meshes = [protocol.MeshUpload.from_array("in2n bake Cube 0a1b", corners, "Cube")]
    target = np.zeros((24, 32, 3), np.uint8)
    aux = [protocol.AuxUpload(1, "target", RawImage.from_array(target))]
    begin = begin_request("up", cameras, images, "s", aux, meshes)
    assert begin.meshes == [m.SurfaceMesh("in2n bake Cube 0a1b", 7, "Cube")]
    assert begin.total_bytes == sum(a.nbytes for a in arrays) + target.nbytes + corners.nbytes
    in_order = [*images, aux[0].image, *meshes]
    assembler = SceneAssembler(begin)
    for content, buffers in plan_chunks(in_order, "up", 999):
        assembler.add_chunk(content, buffers)
    assembler.finish(m.SceneEndRequest(upload_id="up", sha256=scene_sha256(in_order)))
    assert bytes(assembler.images[3]) == corners.tobytes()


def test_meshes_are_refused_when_malformed_or_named_twice() -> None:
    cameras, images, _ = scene(n=2)
    corners = np.zeros((2, 3, 5), np.float32)
    with pytest.raises(protocol.ValidationError, match="float32 \\[triangles, 3, 5\\]"):
        protocol.MeshUpload.from_array("a", corners.astype(np.float64))
    with pytest.raises(protocol.ValidationError, match="share a name"):
        begin_request("up", cameras, images, "s", (), [protocol.MeshUpload.from_array("a", corners)] * 2)
    with pytest.raises(protocol.ValidationError) as info:
        begin_request("up", cameras, images, "s", (), [protocol.MeshUpload.from_array("../a", corners)])
    assert info.value.field == "content.meshes[0].name"
    with pytest.raises(protocol.ValidationError, match="'a' has no triangles"):
        protocol.MeshUpload.from_array("a", corners[:0])
    content = protocol.schema.encode(begin_request("up", cameras, images, "s", (),
                                                   [protocol.MeshUpload.from_array("a", corners)]))
    content["meshes"][0]["triangles"] = 3_000_000  # a peer declaring more than the limit
    with pytest.raises(protocol.ValidationError) as info:
        protocol.schema.decode(m.SceneBeginRequest, content)
    assert info.value.field.endswith("meshes[0].triangles")
