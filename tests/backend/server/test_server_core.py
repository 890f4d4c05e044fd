"""The server core over real TCP sockets: dispatch, errors, duplicates, events, robustness, shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import zmq

import protocol
from backend.server import ALL, Request, Server
from backend.server.device import DeviceInfo, DeviceProbe
from protocol import ConnectionInfo, Session
from protocol import messages as m

pytestmark = pytest.mark.timeout(60)


class RawPeer:
    """A DEALER that sends hand-made frames, to do what a well-behaved Client never would."""

    def __init__(self, info: ConnectionInfo, key: bytes | None = None, *, legacy_routing_id: bool = False) -> None:
        """``legacy_routing_id``: connect as clients before protocol 2.3 did, with the session id as routing id."""
        self.session = Session(info.key_bytes if key is None else key)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        routing_id = self.session.session_id.encode() if legacy_routing_id else self.session.routing_id
        self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.connect(info.url)

    def send_frames(self, frames: list[Any]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout_s: float = 5.0) -> protocol.Message | None:
        """The next message: a signed one verified, an unsigned error reply read as is (``self.signed`` says which)."""
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        frames = self.sock.recv_multipart()
        self.signed = frames[1] != b""
        unsigned = self.session.read_unsigned_error(frames)
        return unsigned if unsigned is not None else self.session.deserialize(frames)

    def close(self) -> None:
        self.sock.close(0)


def client_for(server: Server, **kwargs: Any) -> protocol.Client:
    return protocol.Client(server.info, timeout_s=kwargs.pop("timeout_s", 5.0), **kwargs)


def test_hello_negotiates_and_reports_the_device_from_the_probe_thread(make_server: Any) -> None:
    started = threading.Event()

    def slow_probe() -> DeviceInfo:
        started.wait(5)
        return DeviceInfo("Fake GPU", 8 << 30, "cuda: Fake GPU")

    server = make_server(probe=DeviceProbe(slow_probe))
    server.start()
    with client_for(server) as client:
        assert client.ping() > 0  # ping is answered while the probe is still running
        threading.Timer(0.2, started.set).start()
        hello = client.hello()
    assert hello.protocol_version == protocol.PROTOCOL_VERSION
    assert (hello.gpu_name, hello.gpu_memory_bytes, hello.device_status) == ("Fake GPU", 8 << 30, "cuda: Fake GPU")
    assert {"hello_request", "ping_request", "shutdown_request"} <= set(hello.capabilities)
    assert hello.limits.max_frame_bytes == server.config.limits.max_frame_bytes


def test_incompatible_client_gets_version_mismatch(make_server: Any) -> None:
    server = make_server()
    server.start()
    with client_for(server) as client:
        with pytest.raises(protocol.VersionMismatch, match="no common protocol version"):
            client.request(m.HelloRequest(protocol_versions=["7.0"]))
        peer = RawPeer(server.info)
        message = peer.session.msg("ping_request")
        message.header["protocol_version"] = "1.1"  # the major before this one
        peer.send_frames(peer.session.serialize(message))
        reply = peer.recv()
        peer.close()
    assert reply is not None and reply.content["ename"] == "VersionMismatch"
    assert reply.parent_header["msg_id"] == message.msg_id


def test_unknown_and_unhandled_types_get_error_replies(make_server: Any) -> None:
    server = make_server()
    server.start()
    with client_for(server) as client:
        with pytest.raises(protocol.UnknownMessageType, match="cancel_request"):
            client.cancel("job1")
    peer = RawPeer(server.info)
    message = peer.session.msg("teleport_request", {"where": "moon"})
    peer.send_frames(peer.session.serialize(message))
    reply = peer.recv()
    peer.close()
    assert reply is not None and reply.msg_type == "error_reply"
    assert reply.content["ename"] == "UnknownMessageType" and reply.parent_header["msg_id"] == message.msg_id


def test_invalid_content_error_names_the_field(make_server: Any) -> None:
    server = make_server()
    server.start()
    peer = RawPeer(server.info)
    camera = {"fl_x": -5.0, "fl_y": 40.0, "cx": 1.0, "cy": 1.0, "w": 2, "h": 2,
              "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}
    content = {"upload_id": "u", "cameras": [camera], "images": [{"dtype": "uint8", "shape": [2, 2, 3]}]}
    peer.send_frames(peer.session.serialize(peer.session.msg("scene_begin_request", content)))
    reply = peer.recv()
    peer.close()
    assert reply is not None and reply.msg_type == "scene_begin_reply"
    assert reply.content["status"] == "error" and reply.content["ename"] == "ValidationError"
    assert reply.content["field"] == "content.cameras[0].fl_x"


def test_duplicate_msg_id_runs_the_handler_once_and_resends_the_reply(make_server: Any) -> None:
    server = make_server()
    calls: list[str] = []

    def cancel(request: Request) -> m.CancelReply:
        calls.append(request.content.job_id)
        return m.CancelReply(job_id=request.content.job_id, state="cancelled")

    server.register("cancel_request", cancel)
    server.start()
    peer = RawPeer(server.info)
    replies = []
    for _ in range(3):  # a Lazy-Pirate client resending: same msg_id, fresh date and signature
        message = m.build(peer.session, m.CancelRequest(job_id="job1"), msg_id="fixed-id")
        peer.send_frames(peer.session.serialize(message))
        reply = peer.recv()
        assert reply is not None
        replies.append(reply)
    peer.close()
    assert calls == ["job1"]
    assert [r.content for r in replies] == [{"status": "ok", "job_id": "job1", "state": "cancelled"}] * 3
    assert all(r.parent_header["msg_id"] == "fixed-id" for r in replies)


def test_garbage_bad_signatures_and_replays_never_crash_the_server(make_server: Any) -> None:
    server = make_server()
    server.start()
    peer = RawPeer(server.info)
    for frames in ([b"hello"], [b"<IDS|MSG>"], [b"<IDS|MSG>", b"sig", b"{", b"}", b"[]", b"x"], [b"\xff" * 100] * 7):
        peer.send_frames(frames)
    ping = peer.session.serialize(peer.session.msg("ping_request"))
    peer.send_frames(ping)
    peer.send_frames(ping)  # exact replay
    names = []
    while (reply := peer.recv(1.0)) is not None:
        names.append(reply.content.get("ename", reply.content["status"]))
    peer.close()
    assert names.count("ok") == 1 and "ReplayedMessage" in names and "MalformedMessage" in names

    wrong = ConnectionInfo(host=server.info.host, port=server.info.port, key="wrong-key")
    with client_for(server) as good, protocol.Client(wrong, timeout_s=2, retries=0) as bad:
        with pytest.raises(protocol.BadSignature, match="same key"):  # the server's reason, read unsigned
            bad.ping()
        assert good.ping() > 0


def test_peers_that_did_not_prove_the_key_get_no_signed_material(make_server: Any) -> None:
    """A peer without the key (or replaying a captured message) is answered with unsigned errors, so it collects
    nothing signed with the server's key; a peer with the key but another protocol major gets a signed error."""
    server = make_server()
    server.start()
    keyless = RawPeer(server.info, key=b"not-the-key")
    keyed = RawPeer(server.info)
    try:
        keyless.send_frames(keyless.session.serialize(keyless.session.msg("ping_request")))
        keyless.send_frames([b"<IDS|MSG>", b"00" * 32, b"{}"])  # too few frames
        unsigned = [keyless.recv(), keyless.recv()]
        assert all(reply is not None for reply in unsigned)
        assert [r.content["ename"] for r in unsigned if r] == ["BadSignature", "MalformedMessage"]
        assert not keyless.signed

        ping = keyed.session.serialize(keyed.session.msg("ping_request"))
        keyed.send_frames(ping)
        assert keyed.recv() is not None and keyed.signed  # answered, signed
        keyed.send_frames(ping)  # the same bytes again: anyone who captured them could send them
        replayed = keyed.recv()
        assert replayed is not None and replayed.content["ename"] == "ReplayedMessage" and not keyed.signed

        other_major = keyed.session.msg("ping_request")
        other_major.header["protocol_version"] = "99.0"
        keyed.send_frames(keyed.session.serialize(other_major))
        mismatch = keyed.recv()
        assert mismatch is not None and mismatch.content["ename"] == "VersionMismatch" and keyed.signed
    finally:
        keyless.close()
        keyed.close()


def test_oversized_frame_is_dropped_and_server_survives(make_server: Any) -> None:
    server = make_server(limits=protocol.Limits(max_frame_bytes=1 << 20))
    server.start()
    chunk = m.SceneChunkRequest(upload_id="u", pieces=[m.ChunkPiece(0, 0, 2 << 20)])
    with client_for(server, timeout_s=0.5, retries=0) as client:
        with pytest.raises(protocol.RequestTimeout):
            client.request(chunk, [bytes(2 << 20)])
    with client_for(server) as client:
        assert client.ping() > 0


def test_events_reach_subscribers_only_and_heartbeats_flow(make_server: Any) -> None:
    server = make_server(heartbeat_interval_s=0.2)

    def snapshot(request: Request) -> m.JobSnapshotReply:
        server.subscribe(request.identity, request.content.job_id or ALL)
        return m.JobSnapshotReply(jobs=[])

    server.register("job_snapshot_request", snapshot)
    server.start()
    with client_for(server) as subscriber, client_for(server) as bystander:
        subscriber.snapshot("job1")
        bystander.ping()
        pixels = bytes(range(12))

        def job_thread() -> None:  # events come from worker threads, never the loop
            server.publish("job1", m.JobStateEvent(job_id="job1", state="editing"))
            server.publish("job1", m.JobPreviewEvent(job_id="job1", step=3, image=m.ImageInfo("uint8", [2, 2, 3])), [pixels])
            server.publish("job2", m.JobStateEvent(job_id="job2", state="editing"))

        threading.Thread(target=job_thread).start()
        events: list[protocol.Received] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(e.msg_type == "heartbeat" for e in events):
            events += subscriber.poll_events(0.3)
        jobs = [(e.msg_type, e.content.job_id) for e in events if e.msg_type != "heartbeat"]
        assert jobs == [("job_state", "job1"), ("job_preview", "job1")]
        assert bytes(events[1].message.buffers[0]) == pixels
        assert any(e.msg_type == "heartbeat" for e in events)
        assert bystander.poll_events(0.5) == []


def test_a_peer_without_the_key_that_knows_a_session_id_gets_none_of_its_events(make_server: Any) -> None:
    server = make_server()

    def snapshot(request: Request) -> m.JobSnapshotReply:
        server.subscribe(request.identity, ALL)
        return m.JobSnapshotReply(jobs=[])

    server.register("job_snapshot_request", snapshot)
    server.start()
    with client_for(server) as victim:
        victim.snapshot(None)
        # the thief connects with the victim's session id as its routing id (ROUTER_HANDOVER hands an identity in
        # use to the newest connection), and with the routing id a legacy client of that session would use
        thieves = []
        for routing_id in (victim.session.session_id.encode(), b"r-" + victim.session.session_id.encode()):
            thief = zmq.Context.instance().socket(zmq.DEALER)
            thief.setsockopt(zmq.LINGER, 0)
            thief.setsockopt(zmq.ROUTING_ID, routing_id)
            thief.connect(server.info.url)
            thieves.append(thief)
        time.sleep(0.3)  # connected
        server.publish("job1", m.JobStateEvent(job_id="job1", state="editing"))
        events = victim.poll_events(2.0)
        assert [(e.msg_type, e.content.job_id) for e in events] == [("job_state", "job1")]
        assert not any(thief.poll(500) for thief in thieves)
        for thief in thieves:
            thief.close(0)

    # a client of an earlier protocol (routing id = session id) still gets its events
    legacy = RawPeer(server.info, legacy_routing_id=True)
    request = m.build(legacy.session, m.JobSnapshotRequest(job_id=None))
    request.header["protocol_version"] = "2.2"
    legacy.send_frames(legacy.session.serialize(request))
    assert legacy.recv() is not None
    server.publish("job2", m.JobStateEvent(job_id="job2", state="done"))
    event = legacy.recv()
    assert event is not None and event.msg_type == "job_state" and event.content["job_id"] == "job2"
    # the same without the version that excuses it: replies, but no events
    impostor = RawPeer(server.info, legacy_routing_id=True)
    impostor.send_frames(impostor.session.serialize(m.build(impostor.session, m.JobSnapshotRequest(job_id=None))))
    assert impostor.recv() is not None
    server.publish("job3", m.JobStateEvent(job_id="job3", state="done"))
    assert impostor.recv(1.0) is None
    legacy.close()
    impostor.close()


def test_handler_failures_and_deferred_replies(make_server: Any) -> None:
    server = make_server()

    def broken(request: Request) -> None:
        raise RuntimeError("disk on fire")

    def deferred(request: Request) -> None:
        threading.Timer(0.1, lambda: request.reply(m.ResultListReply(job_id=request.content.job_id))).start()

    server.register("cancel_request", broken)
    server.register("result_list_request", deferred)
    server.start()
    with client_for(server) as client:
        with pytest.raises(protocol.RemoteError, match="disk on fire") as info:
            client.cancel("j")
        assert info.value.remote_ename == "RuntimeError"
        assert client.request(m.ResultListRequest(job_id="j")).job_id == "j"
        assert client.ping() > 0


def test_shutdown_replies_then_stops(make_server: Any) -> None:
    server = make_server()
    hooks: list[str] = []
    server.on_shutdown.append(lambda: hooks.append("cancelled jobs"))
    server.start()
    with client_for(server) as client:
        client.shutdown("test")
    assert server.stopped.wait(5)
    assert hooks == ["cancelled jobs"]


def test_non_loopback_bind_without_key_is_refused() -> None:
    from backend.server import ServerConfig

    with pytest.raises(protocol.ConnectionFileError, match="requires a key"):
        Server(ServerConfig(host="0.0.0.0", key=""))
