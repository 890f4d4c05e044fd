"""What a hostile (or merely unlucky) peer sends, against an in-process server with the job service: text and
numbers that could never be encoded again, replies that cannot be built, uploads that try to exhaust memory or the
event loop, uploads touched after they ended, engine overrides out of range, replays across a restart. After each,
the server still answers ping (real ROUTER socket on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

import protocol
from backend.server import Server, ServerConfig, register_basic_handlers
from backend.server.jobs import JobService, JobServiceConfig
from protocol import messages as m

pytestmark = pytest.mark.timeout(180)


def start_service(jobs_dir: Path, **config: object) -> JobService:
    server = Server(ServerConfig(probe_device=False, heartbeat_interval_s=0.5))
    register_basic_handlers(server)
    jobs = JobService(server, JobServiceConfig(jobs_dir=jobs_dir, **config))  # type: ignore[arg-type]
    jobs.start()
    server.start()
    return jobs


@pytest.fixture
def service(tmp_path: Path) -> Iterator[JobService]:
    jobs = start_service(tmp_path / "jobs", max_scene_bytes=64 * 1024)
    yield jobs
    jobs.server.stop()
    assert jobs.server.stopped.wait(10)


def client_for(service: JobService, **kwargs: object) -> protocol.Client:
    return protocol.Client(service.server.info, timeout_s=5.0, retries=0, **kwargs)  # type: ignore[arg-type]


def camera(size: int = 16) -> m.Camera:
    return m.Camera(fl_x=20.0, fl_y=20.0, cx=size / 2, cy=size / 2, w=size, h=size, transform_matrix=np.eye(4).tolist())


def raw_request(service: JobService, msg_type: str, content_json: bytes) -> dict[str, object]:
    """A correctly signed request whose content frame is ``content_json`` verbatim; the server's reply content."""
    session = protocol.Session(service.server.info.key_bytes)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, session.routing_id)
    sock.connect(service.server.info.url)
    try:
        frames = [bytes(f) for f in session.serialize(session.msg(msg_type))]
        frames[5] = content_json
        frames[1] = session.signer.sign(frames[2:])
        sock.send_multipart(frames)
        assert sock.poll(5000), "no reply"
        return session.deserialize(sock.recv_multipart()).content
    finally:
        sock.close()


@pytest.mark.parametrize("content", [
    b'{"scene_id": "s", "instruction": "make it \\ud800 blue"}',
    b'{"scene_id": "s", "instruction": "x", "guidance_scale": 1e999}',
    b'{"scene_id": "s", "instruction": "x", "engine_overrides": {"nerf": {"lr": -1e400}}}',
    b'{"payload": "\\udfff"}',
])
def test_unencodable_text_and_non_finite_numbers_are_refused_and_the_server_lives(service, content) -> None:
    msg_type = "ping_request" if b"payload" in content else "edit_start_request"
    reply = raw_request(service, msg_type, content)
    assert reply["status"] == "error" and reply["ename"] == "MalformedMessage" and reply["field"] == "content"
    with client_for(service) as client:
        assert client.ping() > 0


def test_a_stored_job_whose_text_cannot_be_encoded_no_longer_stops_restarted_servers(tmp_path) -> None:
    """Before the decoder refused it, such a job could be stored; every restarted server then died on a snapshot."""
    folder = tmp_path / "jobs" / "jobs" / "job-00000000abcd"
    folder.mkdir(parents=True)
    record = {"job_id": "job-00000000abcd", "scene_id": "scene-1", "state": "failed", "created": "2026-01-01",
              "request": {"scene_id": "scene-1", "instruction": "make it \ud800 blue"}}
    (folder / "record.json").write_text(json.dumps(record))  # json.dumps escapes the lone surrogate as \ud800
    service = start_service(tmp_path / "jobs")
    try:
        with client_for(service) as client:
            with pytest.raises(protocol.RemoteError, match="InternalError"):
                client.snapshot(None, subscribe=False)
            assert client.ping() > 0  # the server carries on
    finally:
        service.server.stop()
        assert service.server.stopped.wait(10)


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"output": {"checkpoint_every": 0}}, "content.engine_overrides.output.checkpoint_every", ">= 1"),
    ({"device": "cuda" + "0" * 100_000}, "content.engine_overrides.device", "exceeds 32"),
    ({"device": "tpu"}, "content.engine_overrides.device", "cuda:N"),
    ({"nerf": {"num_proposal_samples_per_ray": ["a", "b"]}},
     "content.engine_overrides.nerf.num_proposal_samples_per_ray[0]", "integer"),
    ({"nerf": {"num_proposal_samples_per_ray": [0]}},
     "content.engine_overrides.nerf.num_proposal_samples_per_ray[0]", ">= 1"),
    ({"update": {"t_min": 0.9, "t_max": 0.1}}, "content.engine_overrides.update.t_min", "above t_max"),
    ({"editor": {"source": "/etc"}}, "content.engine_overrides.editor.source", "model folders"),
    ({"editor": {"source": "../../../../root/.ssh"}}, "content.engine_overrides.editor.source", "model folders"),
])
def test_engine_overrides_are_validated_when_the_job_is_submitted(service, overrides, field, message) -> None:
    image = protocol.RawImage.from_array(np.zeros((16, 16, 3), np.uint8))
    with client_for(service) as client:
        scene_id = client.upload_scene([camera()], [image]).scene_id
        with pytest.raises(protocol.ValidationError, match=message) as error:
            client.start_edit(m.EditStartRequest(scene_id=scene_id, instruction="x", engine_overrides=overrides))
        assert error.value.field == field
        assert client.ping() > 0
    assert not list(service.store.jobs.iterdir())  # nothing was queued


def test_editor_sources_a_client_may_name(tmp_path) -> None:
    from backend.server.jobs.requests import check_editor_source

    models = tmp_path / "models"
    (models / "ip2p").mkdir(parents=True)
    config = JobServiceConfig(jobs_dir=tmp_path / "jobs", model_dirs=[models], default_editor="/opt/served/model")
    for allowed in ("tiny", "full-random", "simulated", "timbrooks/instruct-pix2pix", "/opt/served/model",
                    str(models / "ip2p")):
        check_editor_source(allowed, config, "source")
    for refused in (str(tmp_path), str(models / ".." / ".."), "/", "~/.ssh", "a/b/c"):
        with pytest.raises(protocol.ValidationError):
            check_editor_source(refused, config, "source")


def test_an_upload_ends_exactly_once_and_takes_no_chunk_after(service) -> None:
    image = protocol.RawImage.from_array(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    with client_for(service) as client:
        client.request(protocol.upload.begin_request("once", [camera()], [image]))
        chunks = list(protocol.upload.plan_chunks([image], "once", 256))
        for chunk, buffers in chunks:
            client.request(chunk, buffers)
        first = client.request(m.SceneEndRequest(upload_id="once", sha256=protocol.scene_sha256([image.data])))
        late_chunk, late_buffers = chunks[0]
        with pytest.raises(protocol.ValidationError, match="has ended"):
            client.request(late_chunk, [b"\xff" * len(bytes(b)) for b in late_buffers])
        with pytest.raises(protocol.ValidationError, match="has ended"):
            client.request(m.SceneEndRequest(upload_id="once", sha256=protocol.scene_sha256([image.data])))
        with pytest.raises(protocol.ValidationError, match="exists already"):
            client.request(protocol.upload.begin_request("once", [camera()], [image]))
    stored = list(service.store.scenes.iterdir())
    assert [p.name for p in stored] == [first.scene_id]  # one scene from one upload, with the bytes sent first
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(stored[0] / "images" / "frame_00000.png")),
                          np.asarray(image.data).reshape(16, 16, 3))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_declared_but_unsent_scenes_cost_no_memory_and_are_capped_together(tmp_path) -> None:
    gib = 1 << 30
    service = start_service(tmp_path / "jobs", max_scene_bytes=8 * gib, max_pending_upload_bytes=12 * gib)
    side = 16384  # one 16384 x 16384 RGBA float32 image: 4 GiB declared by a message of a few hundred bytes
    info = m.ImageInfo(dtype="float32", shape=[side, side, 4])
    before = peak_rss_mib()
    try:
        with client_for(service) as client:
            for index in range(3):
                client.request(m.SceneBeginRequest(upload_id=f"big{index}", cameras=[camera(side)], images=[info]))
            with pytest.raises(protocol.ValidationError, match="uploads in progress already hold"):
                client.request(m.SceneBeginRequest(upload_id="big3", cameras=[camera(side)], images=[info]))
            client.request(m.SceneChunkRequest(upload_id="big0", pieces=[m.ChunkPiece(0, 0, 1024)]), [b"x" * 1024])
            assert client.ping() > 0
        grown = peak_rss_mib() - before
        print(f"\npeak RSS growth after declaring 12 GiB of uploads: {grown:.1f} MiB")
        # 12 GiB declared: an eager assembler would have zero-filled it; a lazy one allocates the one image written
        # to (4 GiB of address space, touched on one page)
        assert grown < 512, f"peak RSS grew by {grown:.0f} MiB"
    finally:
        service.server.stop()
        assert service.server.stopped.wait(10)


def test_small_files_declaring_many_pixels_count_as_their_pixels(tmp_path) -> None:
    """Issue 22, item 7: three 216 KB PNGs declaring 8,192 px took the server to 2.3 GB; the cap counted their files."""
    mib = 1 << 20
    service = start_service(tmp_path / "jobs", max_pending_upload_bytes=256 * mib)
    side = 8192  # 192 MiB of RGB pixels, in a PNG of a few hundred KB
    info = m.ImageInfo(dtype="uint8", shape=[side, side, 3], encoding="png", encoded_bytes=216 * 1024)
    try:
        with client_for(service) as client:
            client.request(m.SceneBeginRequest(upload_id="first", cameras=[camera(side)], images=[info]))
            with pytest.raises(protocol.ValidationError) as refused:
                client.request(m.SceneBeginRequest(upload_id="second", cameras=[camera(side)], images=[info]))
            assert "(decoded pixels)" in refused.value.message and "192.2 MiB" in refused.value.message
            assert client.ping() > 0
    finally:
        service.server.stop()
        assert service.server.stopped.wait(10)


def test_scattered_tiny_pieces_are_bounded_and_do_not_stall_other_clients(service) -> None:
    size = 64
    image_info = m.ImageInfo(dtype="uint8", shape=[size, size, 3])
    with client_for(service) as attacker, client_for(service) as other:
        attacker.request(m.SceneBeginRequest(upload_id="scatter", cameras=[camera(size)], images=[image_info]))
        refused = 0
        worst_ping = 0.0
        for batch in range(8):  # 1-byte pieces two bytes apart: each would be a separate range
            pieces = [m.ChunkPiece(0, 2 * (batch * 512 + k), 1) for k in range(512)]
            try:
                attacker.request(m.SceneChunkRequest(upload_id="scatter", pieces=pieces), [b"x"] * 512)
            except protocol.ValidationError as error:
                assert "separate byte ranges" in str(error)
                refused += 1
            worst_ping = max(worst_ping, other.ping())
        assert refused >= 5  # 1024 ranges accepted, then every further scattered chunk is refused
        print(f"\nworst ping while scattered pieces arrived: {1000 * worst_ping:.1f} ms")
        assert worst_ping < 0.5, worst_ping
        # in-order pieces still complete the upload (they merge with what is there)
        pieces = [m.ChunkPiece(0, 0, size * size * 3)]
        attacker.request(m.SceneChunkRequest(upload_id="scatter", pieces=pieces), [b"y" * (size * size * 3)])


def test_a_capture_from_before_a_restart_is_refused_even_with_a_fixed_key(tmp_path) -> None:
    key = "fixed-key-for-this-test"
    old = Server(ServerConfig(probe_device=False, key=key))
    register_basic_handlers(old)
    old.start()
    captured_session = protocol.Session(key.encode())
    captured = [bytes(f) for f in captured_session.serialize(captured_session.msg("shutdown_request"))]
    old.stop()
    assert old.stopped.wait(10)
    time.sleep(0.05)
    new = Server(ServerConfig(probe_device=False, key=key))
    register_basic_handlers(new)
    new.start()
    try:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, captured_session.routing_id)
        sock.connect(new.info.url)
        sock.send_multipart(captured)
        assert sock.poll(5000)
        frames = sock.recv_multipart()
        sock.close()
        assert frames[1] == b""  # a replay proves no key: the refusal is unsigned
        reply = protocol.Session(key.encode()).read_unsigned_error(frames)
        assert reply is not None and reply.content["ename"] == "ReplayedMessage"
        with protocol.Client(new.info, timeout_s=5) as client:
            assert client.ping() > 0  # the replayed shutdown did not stop it
    finally:
        new.stop()
        assert new.stopped.wait(10)


def test_serve_reads_its_key_from_a_file_and_keeps_its_log_private(tmp_path) -> None:
    import subprocess
    import sys

    key_file = tmp_path / "key"
    key_file.write_text("a-key-from-a-file\n")
    key_file.chmod(0o600)
    connection = tmp_path / "connection.json"
    process = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--connection-file", str(connection),
                                "--key-file", str(key_file), "--no-device-probe", "--jobs-dir", str(tmp_path / "jobs")],
                               cwd=Path(__file__).resolve().parents[3], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not connection.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        info = protocol.read_connection_file(connection)
        assert info.key == "a-key-from-a-file"
        assert "a-key-from-a-file" not in Path(f"/proc/{process.pid}/cmdline").read_bytes().decode(errors="replace")
        with protocol.Client(info, timeout_s=10) as client:
            assert client.ping() > 0
        assert os.stat(tmp_path / "jobs" / "server.log").st_mode & 0o777 == 0o600
        assert os.stat(tmp_path / "jobs").st_mode & 0o777 == 0o700
    finally:
        process.terminate()
        process.wait(30)


def test_a_jobs_folder_another_user_owns_is_refused(tmp_path) -> None:
    if os.getuid() == 0:  # as on the project's machines: plant a folder owned by another user
        planted = tmp_path / "planted"
        planted.mkdir()
        os.chown(planted, 12345, 12345)
    else:  # an ordinary user: the root folder is another user's
        planted = Path("/")
    with pytest.raises(protocol.ConnectionFileError, match="belongs to another user"):
        protocol.ensure_private_dir(planted)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    protocol.ensure_private_dir(mine)
    assert mine.stat().st_mode & 0o777 == 0o700


def test_interrupted_scene_writes_are_removed_at_start_and_failed_downloads_leave_nothing(tmp_path) -> None:
    interrupted = tmp_path / "jobs" / "scenes" / "scene-0000deadbeef"
    (interrupted / "images").mkdir(parents=True)
    (interrupted / "images" / "frame_00000.png").write_bytes(b"half a png")  # no transforms.json: never finished
    service = start_service(tmp_path / "jobs", max_scene_bytes=64 * 1024)
    try:
        assert not interrupted.exists()
        image = protocol.RawImage.from_array(np.zeros((16, 16, 3), np.uint8))
        with client_for(service) as client:
            client.upload_scene([camera()], [image])
            destination = tmp_path / "downloads" / "mesh.ply"
            destination.parent.mkdir()
            with pytest.raises(protocol.ValidationError):
                client.fetch_result("job-000000000000", "mesh.ply", destination)
        assert list(destination.parent.iterdir()) == []  # neither mesh.ply nor mesh.ply.part
    finally:
        service.server.stop()
        assert service.server.stopped.wait(10)


def test_depth_sent_as_an_8_bit_png_is_refused_naming_the_image_not_stored_as_zeros(service) -> None:
    """Issue 22, item 16: float32 depth sent as an 8-bit RGB PNG used to be stored as zeros, without a warning, while
    the job said it used depth supervision."""
    import io

    from PIL import Image

    encoded = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(encoded, format="PNG")
    photo = protocol.RawImage.from_array(np.zeros((16, 16, 3), np.uint8))
    depth = protocol.RawImage.from_encoded(encoded.getvalue(), "png", [16, 16, 1])
    depth = dataclasses.replace(depth, info=dataclasses.replace(depth.info, dtype="float32"))
    with client_for(service) as client:
        with pytest.raises(protocol.ValidationError) as refused:
            client.upload_scene([camera()], [photo], aux=[protocol.AuxUpload(0, "depth", depth)])
        assert refused.value.field == "content.aux_images[0].image"
        assert "8-bit png" in str(refused.value) and "16-bit PNG of millimetres" in str(refused.value)
        assert not list((service.config.jobs_dir / "scenes").glob("*/transforms.json"))  # nothing stored
        good = protocol.RawImage.from_array(np.full((16, 16), 2.5, np.float32))
        assert client.upload_scene([camera()], [photo], aux=[protocol.AuxUpload(0, "depth", good)]).scene_id
