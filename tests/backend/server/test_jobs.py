"""The job service through a real ``python -m backend serve`` process on 127.0.0.1: upload -> edit -> progress,
previews and results (bit-exact), two clients, queueing, cancel, bad requests; tiny editor and tiny nerfacto."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

import protocol
from protocol import messages as m
from tests.backend.server.jobs_helpers import BackendProcess, JobWatch, edit_request, send_twice, start_backend, upload
from tests.helpers.scenes import TinyScene, make_tiny_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # minutes when idle; far more when the CPU is shared


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> TinyScene:
    return make_tiny_scene(tmp_path_factory.mktemp("scene") / "scene", num_views=10, size=32)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    process = start_backend(tmp_path_factory.mktemp("backend"), "--max-scene-mb", "1")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def finished(backend: BackendProcess, scene: TinyScene) -> tuple[str, str, JobWatch, JobWatch]:
    """One job watched by its starter and by a second client that joins mid-job with a snapshot."""
    with backend.client() as starter, backend.client() as joiner:
        scene_id = upload(starter, scene)
        reply = starter.start_edit(edit_request(scene_id))
        assert reply.state == "queued" and reply.queue_position == 0
        first, second = JobWatch(reply.job_id), JobWatch(reply.job_id)
        first.follow(starter, lambda w: "editing" in w.states)
        snapshot = joiner.snapshot(reply.job_id, subscribe=True)
        assert [job.state for job in snapshot.jobs] == ["editing"] and snapshot.jobs[0].scene_id == scene_id
        second.states.append(snapshot.jobs[0].state)
        done = lambda w: bool(w.states) and w.states[-1] in m.FINAL_STATES  # noqa: E731
        first.follow(starter, done)
        second.follow(joiner, done)
    return scene_id, reply.job_id, first, second


def test_job_runs_through_its_states_with_progress_and_previews(finished):
    _, job_id, watch, _ = finished
    assert watch.states[-1] == "done", watch.logs[-5:]
    assert [s for s in watch.states if s != "queued"] == ["preparing", "reconstructing", "editing", "exporting", "done"]
    phases = [p.phase for p in watch.progress]
    assert "reconstructing" in phases and "editing" in phases
    edit = [p for p in watch.progress if p.phase == "editing"]
    assert edit[-1].step == edit[-1].total_steps == 20 and edit[-1].images_edited == 4
    assert all(np.isfinite(list(p.losses.values())).all() and "loss" in p.losses for p in watch.progress)
    assert [p.fraction for p in watch.progress] == sorted(p.fraction for p in watch.progress)
    assert watch.previews, "no preview reached the client"
    event, pixels = watch.previews[-1]
    assert event.camera_index == 0 and event.image.shape == [32, 32, 3]  # camera 0 at max_side 32
    image = np.frombuffer(pixels, np.uint8).reshape(event.image.shape)
    assert image.std() > 1.0  # a render, not a blank buffer


def test_results_are_fetched_bit_exact_with_camera_indices(finished, backend, tmp_path):
    _, job_id, watch, _ = finished
    assert len(watch.results) == 1
    with backend.client() as client:
        listing = client.request(m.ResultListRequest(job_id=job_id))
        by_kind = {}
        for artifact in listing.artifacts:
            by_kind.setdefault(artifact.kind, []).append(artifact)
        assert {"mesh", "pointcloud", "image"} <= set(by_kind)
        indices = [a.metadata["camera_index"] for a in by_kind["image"]]
        assert len(indices) == 4 and len(set(indices)) == 4 and set(indices) <= set(range(10))  # 4 edits, 4 views
        work = backend.jobs_dir / "jobs" / job_id / "work"
        manifest = json.loads((work / "manifest.json").read_text())
        for artifact in listing.artifacts:
            path = client.fetch_result(job_id, artifact.name, tmp_path / artifact.name.replace("/", "_"),
                                       chunk_bytes=4096)  # several chunks for the mesh and point cloud
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == artifact.sha256 and len(data) == artifact.size
            if "snapshot_step" in artifact.metadata:  # a snapshot's render or export: by its path in the job
                assert artifact.name.startswith("snapshots/step-") and data == (work / artifact.name).read_bytes()
            elif artifact.kind == "image":
                source = work / manifest["edited_images"][artifact.name]
                assert data == source.read_bytes()
                index = artifact.metadata["camera_index"]
                assert artifact.name == f"images/frame_{index:05d}.png"
            elif artifact.kind == "mesh":
                assert artifact.name == "mesh.ply" and data == (work / manifest["mesh"]).read_bytes()
            else:
                assert artifact.name == "point_cloud.ply" and data == (work / manifest["point_cloud"]).read_bytes()


def test_uploaded_scene_is_stored_as_the_client_sent_it(finished, backend, scene):
    scene_id = finished[0]
    folder = backend.jobs_dir / "scenes" / scene_id
    transforms = json.loads((folder / "transforms.json").read_text())
    assert len(transforms["frames"]) == len(scene.images)
    for index, frame in enumerate(transforms["frames"]):
        stored = np.asarray(Image.open(folder / frame["file_path"]))
        assert np.array_equal(stored, scene.images[index][..., :3])
        assert np.allclose(frame["transform_matrix"], scene.c2w[index])
    server_log = (backend.jobs_dir / "server.log").read_text()  # the default log file, with levels
    assert "INFO backend.server.jobs.upload: upload " in server_log and f"stored as {scene_id}" in server_log


def test_second_client_joins_with_a_snapshot_and_sees_the_same_events(finished):
    _, _, starter, joiner = finished
    assert joiner.states[0] == "editing" and joiner.states[-1] == "done"
    assert joiner.progress and joiner.progress[-1] == starter.progress[-1]
    assert len(joiner.results) == 1 and joiner.results[0].artifacts == starter.results[0].artifacts


def test_second_job_queues_behind_the_first_and_cancel_takes_effect_within_a_cycle(backend, finished):
    scene_id = finished[0]
    with backend.client() as client:
        long_job = client.start_edit(edit_request(scene_id, reconstruction_steps=50, total_steps=100000))
        # a retried start (same msg_id, as the client's Lazy-Pirate retry sends it) is answered twice, run once
        before = {job.job_id for job in client.snapshot(None, subscribe=False).jobs}
        replies = [r for r in send_twice(client.info, edit_request(scene_id, reconstruction_steps=50))
                   if isinstance(r, m.EditStartReply)]
        assert len(replies) == 2 and replies[0] == replies[1]
        waiting = replies[0]
        added = {job.job_id for job in client.snapshot(None, subscribe=False).jobs} - before
        assert added == {waiting.job_id}
        assert (long_job.queue_position, waiting.queue_position) == (0, 1)
        watch = JobWatch(long_job.job_id)
        watch.follow(client, lambda w: "editing" in w.states)
        assert client.cancel(waiting.job_id).state == "cancelled"  # queued: removed at once
        asked = time.monotonic()
        assert client.cancel(long_job.job_id).state == "editing"  # running: stops before its next NeRF step
        watch.follow(client, lambda w: "cancelled" in w.states, timeout_s=120)
        assert watch.states[-1] == "cancelled"
        latency = watch.state_times["cancelled"] - asked
        snapshot = client.snapshot(None, subscribe=False)
    states = {job.job_id: job.state for job in snapshot.jobs}
    assert states[long_job.job_id] == "cancelled" and states[waiting.job_id] == "cancelled"
    state = json.loads((backend.jobs_dir / "jobs" / long_job.job_id / "work" / "state.json").read_text())
    assert state["status"] == "cancelled" and state["checkpoint"]
    print(f"cancel latency {latency:.3f} s")


def test_bad_requests_are_answered_with_the_field_named(backend, finished, scene):
    scene_id = finished[0]
    with backend.client(timeout_s=10, retries=0) as client:
        with pytest.raises(protocol.ValidationError) as unknown_key:
            client.start_edit(edit_request(scene_id, nerf={"hidden_dimm": 3}))
        assert unknown_key.value.field == "content.engine_overrides.nerf.hidden_dimm"
        with pytest.raises(protocol.ValidationError) as bad_type:
            client.start_edit(edit_request(scene_id, output={"snapshot_every": "often"}))
        assert bad_type.value.field == "content.engine_overrides.output.snapshot_every"
        with pytest.raises(protocol.ValidationError) as no_scene:
            client.start_edit(edit_request("scene-does-not-exist"))
        assert no_scene.value.field == "content.scene_id"
        with pytest.raises(protocol.ValidationError) as no_job:
            client.cancel("job-nope")
        assert no_job.value.field == "content.job_id"
        with pytest.raises(protocol.ValidationError) as no_artifact:
            client.request(m.ResultFetchRequest(job_id=finished[1], name="exports/../../record.json"))
        assert no_artifact.value.field == "content.name"
        # 1 MiB limit on this server: 40 views of 128x128 RGBA are 2.5 MiB
        big = [np.zeros((128, 128, 4), np.uint8)] * 40
        cameras = [m.Camera(fl_x=100.0, fl_y=100.0, cx=64.0, cy=64.0, w=128, h=128,
                            transform_matrix=np.eye(4).tolist())] * 40
        with pytest.raises(protocol.ValidationError, match="exceeds this server's limit") as too_big:
            client.upload_scene(cameras, [protocol.RawImage.from_array(a) for a in big])
        assert too_big.value.field == "content.images"
        assert client.ping() > 0


def test_a_client_vanishing_mid_upload_does_not_disturb_others(backend, scene):
    info = protocol.read_connection_file(backend.connection_file)
    begin = protocol.upload.begin_request("abandoned", [m.Camera(fl_x=30.0, fl_y=30.0, cx=16.0, cy=16.0, w=32, h=32,
                                                                  transform_matrix=np.eye(4).tolist())] * 2,
                                          [protocol.RawImage.from_array(np.zeros((32, 32, 3), np.uint8))] * 2)
    with protocol.Client(info, timeout_s=10) as quitter:
        quitter.request(begin)
        chunk, buffers = next(protocol.upload.plan_chunks(
            [protocol.RawImage.from_array(np.zeros((32, 32, 3), np.uint8))], "abandoned", 1024))
        quitter.request(chunk, buffers)
    with backend.client() as other:
        assert upload(other, scene).startswith("scene-")
        with pytest.raises(protocol.ValidationError, match="incomplete"):
            other.request(m.SceneEndRequest(upload_id="abandoned", sha256="0" * 64))


def test_a_client_vanishing_mid_download_does_not_disturb_others(finished, backend, tmp_path):
    import zmq

    _, job_id, watch, _ = finished
    artifact = max(watch.results[0].artifacts, key=lambda a: a.size)
    info = protocol.read_connection_file(backend.connection_file)
    session = protocol.Session(info.key_bytes)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, session.routing_id)
    sock.connect(info.url)
    for offset in range(0, artifact.size, 1024):  # ask for every chunk, read one, vanish
        request = m.ResultFetchRequest(job_id=job_id, name=artifact.name, offset=offset, length=1024)
        sock.send_multipart(session.serialize(m.build(session, request)))
    assert sock.poll(10000)
    first = m.parse(session.deserialize(sock.recv_multipart()))
    assert isinstance(first, m.ResultFetchReply) and first.offset == 0 and first.sha256 == artifact.sha256
    sock.close()
    with backend.client() as other:
        path = other.fetch_result(job_id, artifact.name, tmp_path / "again", chunk_bytes=2048)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
        assert other.ping() > 0


def test_a_job_without_geometry_is_done_with_its_images_and_says_why(backend, finished):
    scene_id = finished[0]
    with backend.client() as client:  # an untrained NeRF is transparent: nothing to export
        job = client.start_edit(edit_request(scene_id, reconstruction_steps=0, total_steps=2, every=1))
        watch = JobWatch(job.job_id)
        watch.follow(client, lambda w: bool(w.states) and w.states[-1] in m.FINAL_STATES)
        listing = client.request(m.ResultListRequest(job_id=job.job_id))
    assert watch.states[-1] == "done", watch.logs[-5:]
    results = [artifact for artifact in listing.artifacts if "snapshot_step" not in artifact.metadata]
    assert {artifact.kind for artifact in results} == {"image"}  # the two edited views, no geometry
    assert {artifact.kind for artifact in listing.artifacts} - {"image"} == {"other"}  # and snapshot renders
    assert any(line.startswith("warning: no geometry exported") for line in watch.logs), watch.logs[-5:]
    record = json.loads((backend.jobs_dir / "jobs" / job.job_id / "record.json").read_text())
    assert "; no geometry exported: " in record["message"]
