"""A client that stops reading costs the server a bounded outbox (issue 22, item 5), over real TCP sockets: what
waits for it stays under ``max_outgoing_bytes``, job progress is merged and previews are dropped oldest first, every
job state arrives in order once it reads again, and its heartbeats say how many events it missed."""

from __future__ import annotations

import time
from typing import Any

import pytest

import protocol
from backend.server import ALL, Request, Server
from backend.server.outbox import Outbox, Sent, outgoing
from protocol import Session
from protocol import messages as m
from tests.backend.server.jobs_helpers import slow_reader

pytestmark = pytest.mark.timeout(120)

PREVIEW = bytes(512 * 512 * 4)  # 1 MiB of pixels per preview event
BOUND = 8 << 20


def progress(job_id: str, step: int) -> m.JobProgressEvent:
    return m.JobProgressEvent(job_id=job_id, progress=m.Progress(phase="editing", step=step, total_steps=1000))


def test_an_outbox_merges_progress_drops_the_oldest_previews_and_keeps_what_a_client_cannot_recover() -> None:
    session = Session(b"key")
    outbox = Outbox(max_bytes=7 * len(PREVIEW) // 2)

    def put(content: Any, buffers: list[bytes] = []) -> None:  # noqa: B006 (never mutated)
        message = m.build(session, content, buffers=buffers)
        message.idents = [b"client"]
        outbox.put(outgoing(message, session.serialize(message)))

    for step in range(10):
        put(progress("job1", step))
        put(progress("job2", step))
        put(m.JobPreviewEvent(job_id="job1", step=step, image=m.ImageInfo("uint8", [512, 512, 4])), [PREVIEW])
        put(m.JobStateEvent(job_id="job1", state="editing", message=f"state {step}"))
    put(m.JobStateEvent(job_id="job1", state="done"))
    sent: list[protocol.Message] = []

    def send(frames: list[Any]) -> Sent:
        sent.append(session.deserialize(frames))
        return Sent.SENT

    assert outbox.nbytes <= 7 * len(PREVIEW) // 2  # previews over the bound were dropped (small events remain)
    assert outbox.flush(send) is Sent.SENT and outbox.nbytes == 0 and not outbox.queued
    kinds = [(message.msg_type, message.content.get("job_id")) for message in sent]
    states = [message.content.get("message") for message in sent if message.msg_type == "job_state"]
    assert states == [f"state {step}" for step in range(10)] + [""]  # every state, in order
    steps = {job: [message.content["progress"]["step"] for message in sent if message.msg_type == "job_progress"
                   and message.content["job_id"] == job] for job in ("job1", "job2")}
    assert steps == {"job1": [9], "job2": [9]}  # merged: the newest progress of each job
    previews = [message.content["step"] for message in sent if message.msg_type == "job_preview"]
    assert previews == [7, 8, 9]  # the oldest were dropped
    assert outbox.dropped == 2 * 9 + 7 and kinds[-1] == ("job_state", "job1")


def test_a_client_that_stops_reading_holds_a_bounded_outbox_and_catches_up(make_server: Any) -> None:
    server: Server = make_server(heartbeat_interval_s=0.3, max_outgoing_bytes=BOUND)

    def snapshot(request: Request) -> m.JobSnapshotReply:
        server.subscribe(request.identity, ALL)
        return m.JobSnapshotReply(jobs=[])

    server.register("job_snapshot_request", snapshot)
    server.start()
    session = Session(server.info.key_bytes)
    reader = slow_reader(server.info, session)
    reader.send_multipart(session.serialize(m.build(session, m.JobSnapshotRequest(job_id=None))))
    assert reader.poll(5000)
    reader.recv_multipart()  # subscribed

    for step in range(200):  # 200 MiB of previews, 200 progress events and 20 states to a client that reads none
        server.publish("job1", m.JobPreviewEvent(job_id="job1", step=step, image=m.ImageInfo("uint8", [512, 512, 4])),
                       [PREVIEW])
        server.publish("job1", progress("job1", step))
        if step % 10 == 9:
            server.publish("job1", m.JobStateEvent(job_id="job1", state="editing", message=f"state {step}"))
    time.sleep(1.0)  # heartbeats and retries happen meanwhile
    waiting = server.outgoing_bytes()[session.routing_id]
    assert 0 < waiting <= BOUND + (1 << 20)  # one preview over at most: the newest is always queued

    received: list[protocol.Message] = []  # reading again: until a heartbeat after the last state
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not reader.poll(200):
            continue
        received.append(session.deserialize(reader.recv_multipart()))
        last = received[-1]
        if last.msg_type == "heartbeat" and any(r.content.get("message") == "state 199" for r in received):
            break
    states = [r.content["message"] for r in received if r.msg_type == "job_state"]
    assert states == [f"state {step}" for step in range(9, 200, 10)]  # never dropped, in order
    previews = [r.content["step"] for r in received if r.msg_type == "job_preview"]
    assert len(previews) < 60 and previews == sorted(previews) and previews[-1] == 199
    steps = [r.content["progress"]["step"] for r in received if r.msg_type == "job_progress"]
    assert steps[-1] == 199 and len(steps) < 200  # merged while waiting; the newest arrives
    dropped = [r.content["dropped_events"] for r in received if r.msg_type == "heartbeat"]
    assert dropped[-1] >= (200 - len(previews)) + (200 - len(steps))
    reader.close(0)


def test_a_client_that_never_reads_its_replies_is_cut_off_at_twice_the_bound(make_server: Any,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    server: Server = make_server(max_outgoing_bytes=1 << 20)
    server.start()
    session = Session(server.info.key_bytes)
    silent = slow_reader(server.info, session)
    payload = "x" * 1000  # echoed in each reply
    for _ in range(5000):  # over 5 MB of replies, never read
        silent.send_multipart(session.serialize(m.build(session, m.PingRequest(payload=payload))))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "reads nothing" not in caplog.text:
        time.sleep(0.2)
    assert "reads nothing" in caplog.text
    assert server.outgoing_bytes().get(session.routing_id, 0) <= 2 << 20
    with protocol.Client(server.info, timeout_s=5.0) as other:  # the server still serves everyone else
        assert other.ping() > 0
    silent.close(0)


def test_a_thread_publishing_faster_than_the_loop_wakes_is_never_refused(make_server: Any) -> None:
    """Each call from another thread wakes the loop through an in-process pipe of 1,000 messages: a burst beyond
    that raised zmq.Again in the publishing job thread."""
    server: Server = make_server()
    server.start()
    server.call_soon(lambda: time.sleep(2.0))  # the loop is busy (e.g. signing large events) meanwhile
    for step in range(5_000):
        server.publish("job1", progress("job1", step))
    with protocol.Client(server.info, timeout_s=10.0) as client:
        assert client.ping() > 0
