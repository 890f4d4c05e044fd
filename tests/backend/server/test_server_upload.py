"""A 100 MB scene uploaded in chunks over real TCP arrives bit-exact (upload handlers registered on the core)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

import protocol
from backend.server import Request, Server
from protocol import RawImage, SceneAssembler
from protocol import messages as m

pytestmark = pytest.mark.timeout(300)


def register_in_memory_upload(server: Server, scenes: dict[str, SceneAssembler]) -> None:
    """Minimal scene-upload handlers (the jobs helper stores scenes in job directories instead)."""
    uploads: dict[str, SceneAssembler] = {}

    def begin(request: Request) -> m.SceneBeginReply:
        uploads[request.content.upload_id] = SceneAssembler(request.content)
        return m.SceneBeginReply(upload_id=request.content.upload_id, expected_bytes=request.content.total_bytes,
                                 max_chunk_bytes=server.config.max_chunk_bytes)

    def chunk(request: Request) -> m.SceneChunkReply:
        assembler = uploads[request.content.upload_id]
        received = assembler.add_chunk(request.content, request.message.buffers)
        return m.SceneChunkReply(upload_id=request.content.upload_id, received_bytes=received,
                                 expected_bytes=assembler.expected_bytes)

    def end(request: Request) -> m.SceneEndReply:
        assembler = uploads.pop(request.content.upload_id)
        assembler.finish(request.content)
        scenes[request.content.upload_id] = assembler
        return m.SceneEndReply(scene_id=request.content.upload_id, image_count=len(assembler.images),
                               total_bytes=assembler.expected_bytes)

    server.register("scene_begin_request", begin)
    server.register("scene_chunk_request", chunk)
    server.register("scene_end_request", end)


def test_100_mb_scene_arrives_bit_exact(make_server: Any) -> None:
    server = make_server(max_chunk_bytes=8 << 20)
    scenes: dict[str, SceneAssembler] = {}
    register_in_memory_upload(server, scenes)
    server.start()
    rng = np.random.default_rng(1)
    h, w = 1080, 1920
    arrays = [rng.integers(0, 256, (h, w, 4), dtype=np.uint8) for _ in range(12)]  # 12 x 8.3 MB = 99.5 MB
    arrays.append(rng.random((h // 4, w // 4, 3), dtype=np.float32))  # + a float image -> just over 100 MB
    total = sum(a.nbytes for a in arrays)
    assert total > 100e6
    cameras = [m.Camera(fl_x=1000.0 + i, fl_y=1000.0, cx=a.shape[1] / 2, cy=a.shape[0] / 2, w=a.shape[1], h=a.shape[0],
                        transform_matrix=[[1, 0, 0, i], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]])
               for i, a in enumerate(arrays)]
    progress: list[int] = []
    with protocol.Client(server.info, timeout_s=30) as client:
        end = client.upload_scene(cameras, [RawImage.from_array(a) for a in arrays], upload_id="big",
                                  chunk_bytes=32 << 20, progress=lambda done, total: progress.append(done))
    assert end.total_bytes == total and end.image_count == len(arrays)
    assert progress[-1] == total and len(progress) >= total // (8 << 20)  # the server's 8 MiB cap was honoured
    received = scenes["big"]
    assert received.begin.cameras == cameras
    for array, data in zip(arrays, received.images):
        assert hashlib.sha256(data).digest() == hashlib.sha256(array.tobytes()).digest()
        assert bytes(data[:4096]) == array.tobytes()[:4096]
