"""Client <-> a small ROUTER peer over real TCP sockets on 127.0.0.1 (server-chosen port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

import protocol
from protocol import ConnectionInfo, Session
from protocol import messages as m

pytestmark = pytest.mark.timeout(60)


class Peer:
    """A ROUTER that answers pings through ``behaviour`` and records every request it decoded."""

    def __init__(self, key: str, behaviour: Callable[[Peer, protocol.Message], None]) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        # As the real server does: a retry reconnects with the same routing id (the session id); without handover
        # libzmq drops the new connection while the old one is still known, and the resend never arrives.
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.session = Session(key.encode())
        self.behaviour = behaviour
        self.seen: list[protocol.Message] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart(copy=False)
            try:
                message = self.session.deserialize(frames)
            except protocol.ProtocolError as exc:
                self.errors.append(exc.ename)
                continue
            self.seen.append(message)
            self.behaviour(self, message)

    def send(self, message: protocol.Message) -> None:
        self.session.send(self.sock, message)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close(0)
        self.ctx.term()


def echo(peer: Peer, message: protocol.Message) -> None:
    request = m.parse(message)
    peer.send(m.build(peer.session, m.JobLogEvent(text="before reply"), parent=message))
    peer.send(m.build(peer.session, m.PingReply(payload=request.payload), parent=message))


@pytest.fixture
def make_peer() -> Iterator[Callable[..., tuple[Peer, ConnectionInfo]]]:
    peers: list[Peer] = []

    def make(behaviour: Callable[[Peer, protocol.Message], None] = echo) -> tuple[Peer, ConnectionInfo]:
        info = ConnectionInfo(host="127.0.0.1", port=0)
        peer = Peer(info.key, behaviour)
        peers.append(peer)
        return peer, ConnectionInfo(host="127.0.0.1", port=peer.port, key=info.key)

    yield make
    for peer in peers:
        peer.close()


def test_round_trip_over_tcp_keeps_events(make_peer: Any) -> None:
    peer, info = make_peer()
    with protocol.Client(info, timeout_s=5) as client:
        assert client.ping("hi") > 0
        reply = client.request_raw(m.PingRequest(payload="again"))
        assert reply.content.payload == "again"
        assert reply.message.parent_header["msg_id"] == peer.seen[-1].msg_id
        events = client.poll_events()
    assert [e.content.text for e in events] == ["before reply", "before reply"]
    # routing id: derived from the session id and the key, which a peer without the key cannot compute
    assert peer.seen[0].idents == [client.session.routing_id]
    assert client.session.routing_id.startswith(b"r-") and client.session.session_id.encode() not in client.session.routing_id
    assert protocol.Session(b"other-key", session_id=client.session.session_id).routing_id != client.session.routing_id


def test_lazy_pirate_retry_reuses_msg_id(make_peer: Any) -> None:
    def drop_first(peer: Peer, message: protocol.Message) -> None:
        if len(peer.seen) > 1:
            echo(peer, message)

    peer, info = make_peer(drop_first)
    with protocol.Client(info, timeout_s=0.3, retries=2) as client:
        client.ping("x")
    assert len(peer.seen) == 2
    assert peer.seen[0].msg_id == peer.seen[1].msg_id
    assert peer.errors == []  # the resend was not taken for a replay


def test_no_reply_raises_request_timeout(make_peer: Any) -> None:
    peer, info = make_peer(lambda peer, message: None)
    # 1 s per attempt: a retry reconnects a fresh socket, which on a loaded 2-core machine can take > 0.2 s to deliver.
    with protocol.Client(info, timeout_s=1.0, retries=1) as client:
        with pytest.raises(protocol.RequestTimeout, match="after 2 attempts"):
            client.ping()
    # The peer records messages on its own thread: give the second attempt a bounded moment to be recorded.
    deadline = time.monotonic() + 3.0
    while len(peer.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(peer.seen) == 2


def test_wrong_key_is_rejected_by_the_peer(make_peer: Any) -> None:
    peer, info = make_peer()
    wrong = ConnectionInfo(host=info.host, port=info.port, key="not-the-key")
    with protocol.Client(wrong, timeout_s=0.5, retries=0) as client:
        with pytest.raises(protocol.RequestTimeout):  # this peer drops what it cannot verify
            client.ping()
    assert peer.errors == ["BadSignature"] and peer.seen == []


def test_remote_error_reply_raises_typed_error(make_peer: Any) -> None:
    def refuse(peer: Peer, message: protocol.Message) -> None:
        error = protocol.ValidationError("must be > 0", field="content.cameras[0].fl_x")
        peer.send(m.build_error(peer.session, message, error))

    _, info = make_peer(refuse)
    with protocol.Client(info, timeout_s=2) as client:
        with pytest.raises(protocol.ValidationError) as raised:
            client.ping()
    assert raised.value.field == "content.cameras[0].fl_x"
