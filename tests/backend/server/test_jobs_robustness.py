"""The job handlers against bad input, on an in-process server (real ROUTER socket on 127.0.0.1) with the job
service registered: garbage frames, bad uploads, unknown ids. No job runs here (nothing is started), so these
tests take seconds; the job flow itself is tested through real processes in test_jobs.py."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from PIL import Image

import protocol
from backend.server import Server, ServerConfig, register_basic_handlers
from backend.server.jobs import JobService, JobServiceConfig
from protocol import messages as m
from protocol.wire import DELIMITER

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[JobService]:
    server = Server(ServerConfig(probe_device=False, heartbeat_interval_s=0.5))
    register_basic_handlers(server)
    jobs = JobService(server, JobServiceConfig(jobs_dir=tmp_path / "jobs", max_scene_bytes=64 * 1024))
    jobs.start()
    server.start()
    yield jobs
    server.stop()
    assert server.stopped.wait(10)


def client_for(service: JobService, **kwargs: object) -> protocol.Client:
    return protocol.Client(service.server.info, timeout_s=5.0, **kwargs)  # type: ignore[arg-type]


def camera(size: int = 16) -> m.Camera:
    return m.Camera(fl_x=20.0, fl_y=20.0, cx=size / 2, cy=size / 2, w=size, h=size, transform_matrix=np.eye(4).tolist())


def test_hello_lists_every_job_request_as_a_capability(service):
    with client_for(service) as client:
        capabilities = set(client.hello().capabilities or [])
    requests = {"edit_start_request", "cancel_request", "job_snapshot_request", "preview_settings_request",
                "result_list_request", "result_fetch_request", "scene_begin_request", "scene_chunk_request",
                "scene_end_request", "hello_request", "ping_request", "shutdown_request", "edit_estimate_request",
                "job_continue_request", "instruction_preview_request", "nerf_snapshot_list_request",
                "nerf_snapshot_export_request", "nerf_snapshot_delete_request", "nerf_snapshot_pin_request"}
    assert capabilities == requests == set(service.server.handlers)


def test_upload_is_stored_as_a_nerfstudio_scene_for_every_pixel_format(service):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
              rng.integers(0, 256, (16, 16, 4), dtype=np.uint8),
              rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16),
              rng.random((16, 16, 3), dtype=np.float32),
              rng.integers(0, 256, (16, 16), dtype=np.uint8)]
    arrays[1][..., 3] = 255  # opaque RGBA: stored as RGB
    with client_for(service) as client:
        end = client.upload_scene([camera()] * len(arrays), [protocol.RawImage.from_array(a) for a in arrays],
                                  scene_name="formats")
    folder = service.store.scene_dir(end.scene_id)
    transforms = json.loads((folder / "transforms.json").read_text())
    assert [frame["file_path"] for frame in transforms["frames"]] == [f"images/frame_{i:05d}.png" for i in range(5)]
    stored = [np.asarray(Image.open(folder / frame["file_path"])) for frame in transforms["frames"]]
    assert np.array_equal(stored[0], arrays[0])
    assert np.array_equal(stored[1], arrays[1][..., :3])
    assert np.abs(stored[2].astype(int) - arrays[2].astype(int) // 257).max() <= 1
    assert np.abs(stored[3].astype(int) - np.round(arrays[3] * 255).astype(int)).max() <= 1
    assert np.array_equal(stored[4], np.repeat(arrays[4][..., None], 3, axis=2))
    assert service.store.cameras(end.scene_id)[0].transform_matrix == np.eye(4).tolist()


def test_bad_uploads_name_the_field_and_leave_nothing_behind(service):
    image = protocol.RawImage.from_array(np.zeros((16, 16, 3), np.uint8))
    with client_for(service, retries=0) as client:
        with pytest.raises(protocol.ValidationError, match="exceeds this server's limit") as too_big:
            client.upload_scene([camera(128)] * 2, [protocol.RawImage.from_array(np.zeros((128, 128, 3), np.uint8))] * 2)
        assert too_big.value.field == "content.images"
        client.request(protocol.upload.begin_request("wrong-sum", [camera()], [image]))
        for chunk, buffers in protocol.upload.plan_chunks([image], "wrong-sum", 256):
            client.request(chunk, buffers)
        with pytest.raises(protocol.ValidationError) as mismatch:
            client.request(m.SceneEndRequest(upload_id="wrong-sum", sha256="0" * 64))
        assert mismatch.value.field == "content.sha256"
        with pytest.raises(protocol.ValidationError) as unknown:
            client.request(m.SceneChunkRequest(upload_id="never-begun", pieces=[m.ChunkPiece(0, 0, 4)]), [b"abcd"])
        assert unknown.value.field == "content.upload_id"
        assert client.ping() > 0
    deadline = time.monotonic() + 5
    while service.uploads.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not service.uploads.pending  # the failed upload's memory is released
    assert not list(service.store.scenes.iterdir())  # no scene was stored


def test_requests_about_unknown_jobs_name_the_field(service):
    with client_for(service, retries=0) as client:
        for request in (m.CancelRequest(job_id="job-x"), m.ResultListRequest(job_id="job-x"),
                        m.ResultFetchRequest(job_id="job-x", name="mesh.ply"),
                        m.JobSnapshotRequest(job_id="job-x"),
                        m.PreviewSettingsRequest(job_id="job-x", preview=m.PreviewSettings())):
            with pytest.raises(protocol.ValidationError) as error:
                client.request(request)
            assert error.value.field == "content.job_id", request
        assert client.snapshot(None, subscribe=False).jobs == []


def garbage_messages(session: protocol.Session, rng: random.Random) -> Iterator[list[bytes]]:
    """Frames a confused or hostile peer might send: random bytes, broken structure, bad JSON, wrong signatures,
    valid signatures over nonsense content, and well-formed job requests with hostile values."""
    def noise(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    hostile = [
        {"upload_id": "../../etc", "cameras": [], "images": []},
        {"upload_id": "u1", "pieces": [{"image_index": -1, "offset": -5, "nbytes": 1 << 40}]},
        {"job_id": "job-" + "a" * 300},
        {"job_id": None, "subscribe": "yes"},
        {"scene_id": "scene-x", "instruction": "x", "engine_overrides": {"nerf": {"hidden_dim": {"deep": [1]}}}},
        {"job_id": "job-x", "name": "../../../../etc/passwd", "offset": -1, "length": 1 << 62},
        {"job_id": "job-x", "preview": {"max_rate_hz": float("inf")}},
    ]
    types = ["scene_begin_request", "scene_chunk_request", "cancel_request", "job_snapshot_request",
             "edit_start_request", "result_fetch_request", "preview_settings_request"]
    for _ in range(60):
        kind = rng.randrange(6)
        if kind == 0:
            yield [noise(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 6))]
        elif kind == 1:
            yield [DELIMITER, noise(64), *[noise(rng.randrange(0, 40)) for _ in range(rng.randrange(0, 7))]]
        elif kind == 2:
            yield [DELIMITER, noise(32).hex().encode(), b"{", b"{}", b"{}", b"[1,2", noise(10)]
        elif kind == 3:  # well-formed JSON with a forged signature
            header = json.dumps(session.header(rng.choice(types))).encode()
            yield [DELIMITER, noise(32).hex().encode(), header, b"{}", b"{}", b"{}"]
        else:  # correctly signed, hostile content (inf serialises as Infinity, rejected by the decoder)
            index = rng.randrange(len(hostile))
            message = session.msg(types[index], hostile[index])
            try:
                yield [bytes(f) for f in session.serialize(message)]
            except (ValueError, protocol.ProtocolError):
                yield [DELIMITER, b"0" * 64, json.dumps(message.header).encode(), b"{}", b"{}", b"{\"x\": NaN}"]


def test_garbage_frames_leave_every_handler_answering(service, tmp_path):
    info = service.server.info
    session = protocol.Session(info.key_bytes)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, session.routing_id)
    sock.connect(info.url)
    rng = random.Random(4)
    sent = 0
    try:
        for frames in garbage_messages(session, rng):
            sock.send_multipart(frames)
            sent += 1
        replies = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sock.poll(500):
            frames = sock.recv_multipart()
            unsigned = session.read_unsigned_error(frames)
            # what the server could not verify is answered unsigned (item 20 of issue 22); the rest is signed
            replies.append(unsigned if unsigned is not None else session.deserialize(frames))
    finally:
        sock.close()
    assert sent == 60
    # every message whose sender could be identified got an error reply (the DEALER's routing id is always known)
    assert replies and all(reply.content.get("status") == "error" for reply in replies)
    names = {reply.content["ename"] for reply in replies}
    assert {"MalformedMessage", "BadSignature", "ValidationError"} <= names, names
    with client_for(service) as client:
        assert client.ping() > 0
        assert client.snapshot(None, subscribe=False).jobs == []
    assert not list(service.store.scenes.iterdir()) and not list(service.store.jobs.iterdir())
    assert not (tmp_path / "etc").exists()
