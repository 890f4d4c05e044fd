"""2D previews cannot exhaust a server (issue 22, items 5 and 6), through a real ``python -m backend serve``: a client
has at most 3 previews waiting or running and is told so in words, can cancel one (it stops before its next DDIM step,
or never starts), and pictures are decoded off the server loop (a ping sent after a preview is answered first)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

import protocol
from protocol import messages as m
from tests.backend.server.jobs_helpers import BackendProcess, start_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    process = start_backend(tmp_path_factory.mktemp("backend"))
    yield process
    process.stop()


def long_preview(view: np.ndarray, **info: object) -> m.InstructionPreviewRequest:
    """A 3x3 grid of 1,000-step edits: minutes on a CPU, so it is still waiting or running when asked about."""
    return m.InstructionPreviewRequest(instruction="make it blue", image=m.ImageInfo(
        "uint8", list(view.shape), **info), guidance_scales=[5.0, 7.5, 10.0],  # type: ignore[arg-type]
        image_guidance_scales=[1.2, 1.5, 1.8], ddim_steps=1000,
        engine_overrides={"editor": {"source": "tiny"}, "device": "cpu"})


def ended(client: protocol.Client, preview_ids: set[str], timeout_s: float = 300) -> dict[str, m.InstructionPreviewEvent]:
    """The final event (grid or failed) of each preview."""
    final: dict[str, m.InstructionPreviewEvent] = {}
    deadline = time.monotonic() + timeout_s
    while set(final) != preview_ids and time.monotonic() < deadline:
        for event in client.poll_events(0.2):
            content = event.content
            if isinstance(content, m.InstructionPreviewEvent) and content.kind in ("grid", "failed"):
                final[content.preview_id] = content
    return final


def test_a_client_has_at_most_three_previews_and_can_cancel_them(backend):
    view = np.zeros((32, 32, 3), np.uint8)
    with backend.client() as client, backend.client() as other:
        hello = client.hello()
        assert hello.limits.max_previews_per_client == 3 and hello.limits.max_previews == 12
        accepted = [client.request(long_preview(view), [view.tobytes()]).preview_id for _ in range(3)]
        with pytest.raises(protocol.ValidationError) as refused:
            client.request(long_preview(view), [view.tobytes()])
        assert "you already have 3 2D previews waiting or running" in refused.value.message
        assert "limit per client is 3" in refused.value.message and refused.value.field is None
        theirs = other.request(long_preview(view), [view.tobytes()]).preview_id  # another client is not held up
        with pytest.raises(protocol.ValidationError):  # one cannot cancel another client's preview
            client.cancel(theirs)
        for preview_id in [*accepted, theirs]:
            asker = other if preview_id == theirs else client
            assert asker.cancel(preview_id).state == "cancelled"
        stopped = ended(client, set(accepted))
        assert set(stopped) == set(accepted)
        assert all(event.kind == "failed" and event.message == "PreviewStopped: cancelled" for event in stopped.values())
        assert ended(other, {theirs})[theirs].kind == "failed"
        # their slots are free again
        again = client.request(long_preview(view), [view.tobytes()]).preview_id
        client.cancel(again)
    assert "failed: cancelled" in backend.log()


def test_pictures_are_decoded_off_the_server_loop_and_oversized_ones_refused_before(backend):
    big = np.zeros((4096, 4096, 3), np.uint8)  # 48 MiB of pixels in a PNG of about 50 KB
    encoded = io.BytesIO()
    Image.fromarray(big).save(encoded, format="PNG", compress_level=9)
    png = encoded.getvalue()
    with backend.client() as client:
        sock = client._ensure_socket()
        client.session.send(sock, m.build(client.session, long_preview(big, encoding="png", encoded_bytes=len(png)),
                                          buffers=[png]))
        client.session.send(sock, m.build(client.session, m.PingRequest(payload="while decoding")))
        replies: list[protocol.Received] = []
        deadline = time.monotonic() + 120
        while len(replies) < 2 and time.monotonic() < deadline:
            received = client._receive(1.0)
            if received is not None and m.spec_for(received.msg_type).kind == "reply":
                replies.append(received)
        # the loop answered the ping while the picture was being decoded (it used to decode it first)
        assert [r.msg_type for r in replies] == ["ping_reply", "instruction_preview_reply"], replies
        assert client.cancel(replies[1].content.preview_id).state == "cancelled"

        huge = m.InstructionPreviewRequest(instruction="x", image=m.ImageInfo("uint8", [12000, 12000, 3], encoding="png",
                                                                              encoded_bytes=10),
                                           engine_overrides={"editor": {"source": "tiny"}, "device": "cpu"})
        with pytest.raises(protocol.ValidationError) as refused:
            client.request(huge, [b"0123456789"])
        assert refused.value.field == "content.image" and "larger than a 2D preview takes" in refused.value.message
        assert client.ping() > 0


def test_previews_and_a_job_share_one_editor_and_a_preview_never_delays_the_jobs_cancel(backend, tmp_path):
    """Issue 22, items 2 and 12: previews queued before a job starts, made during it and after it all use the one
    editor the job loaded (a second model used to be loaded); a job cancelled while it makes a preview between its
    steps stops before the preview's next DDIM step, and the preview is finished afterwards by the preview thread."""
    from tests.backend.server.jobs_helpers import JobWatch, edit_request, upload
    from tests.helpers.scenes import make_tiny_scene

    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32)
    view = np.ascontiguousarray(scene.images[0][..., :3])

    def grid(ddim_steps: int) -> m.InstructionPreviewRequest:
        return m.InstructionPreviewRequest(instruction="make it blue", image=m.ImageInfo("uint8", list(view.shape)),
                                           guidance_scales=[5.0, 7.5, 10.0], image_guidance_scales=[1.2, 1.5, 1.8],
                                           ddim_steps=ddim_steps, memory_mode="in2n-tiny",
                                           engine_overrides={"editor": {"source": "tiny"}, "device": "cpu"})

    loads_before = backend.log().count("editor 'tiny' ready")
    with backend.client() as client:
        queued = {client.request(grid(4), [view.tobytes()]).preview_id for _ in range(2)}
        job_id = client.start_edit(edit_request(upload(client, scene), reconstruction_steps=100, total_steps=2000,
                                                every=4, outputs=("images",))).job_id
        watch = JobWatch(job_id)
        finals: dict[str, tuple[int, str]] = {}  # preview -> (position among the events, kind)
        order: list[str] = []

        def take(events: list[protocol.Received]) -> None:
            watch.take(events)
            for event in events:
                content = event.content
                if isinstance(content, m.JobStateEvent) and content.job_id == job_id:
                    order.append(f"job {content.state}")
                if isinstance(content, m.InstructionPreviewEvent) and content.kind in ("grid", "failed"):
                    finals[content.preview_id] = (len(order), content.kind)
                    order.append(f"preview {content.kind}")

        deadline = time.monotonic() + 600
        while not (set(finals) >= queued and "editing" in watch.states) and time.monotonic() < deadline:
            take(client.poll_events(0.2))
        assert all(finals[p][1] == "grid" for p in queued), finals
        during = client.request(grid(200), [view.tobytes()]).preview_id  # made by the job, between its steps
        into = time.monotonic() + 3.0  # into the preview's DDIM steps, inside the job's thread
        while time.monotonic() < into:
            take(client.poll_events(0.2))
        assert during not in finals and "job cancelled" not in order
        client.cancel(job_id)
        while during not in finals and time.monotonic() < deadline:
            take(client.poll_events(0.2))
    assert "job cancelled" in order, order
    assert order.index("job cancelled") < finals[during][0], order  # the cancel did not wait for the preview
    assert finals[during][1] == "grid", order  # the preview was finished after the job stopped
    assert backend.log().count("editor 'tiny' ready") - loads_before <= 1, backend.log()[-3000:]


def test_a_starting_job_takes_the_editor_over_from_a_long_preview_before_its_next_ddim_step(backend, tmp_path):
    """Issue 22, item 3: a long preview borrowing the editor kept a new job queued until its whole grid was made.
    The job now interrupts it before its next DDIM step, starts with that same editor (it loads none of its own) and
    makes the rest of the preview between its steps."""
    from tests.backend.server.jobs_helpers import JobWatch, edit_request, upload
    from tests.helpers.scenes import make_tiny_scene

    scene = make_tiny_scene(tmp_path / "scene", num_views=10, size=32)
    view = np.ascontiguousarray(scene.images[0][..., :3])
    two_long_cells = m.InstructionPreviewRequest(
        instruction="make it blue", image=m.ImageInfo("uint8", list(view.shape)), guidance_scales=[5.0, 10.0],
        image_guidance_scales=[1.5], ddim_steps=1000, memory_mode="in2n-tiny",
        engine_overrides={"editor": {"source": "tiny"}, "device": "cpu"})
    loads_before = backend.log().count("editor 'tiny' ready")
    with backend.client() as client:
        preview_id = client.request(two_long_cells, [view.tobytes()]).preview_id
        order: list[str] = []
        deadline = time.monotonic() + 600
        while "preview cell" not in order and time.monotonic() < deadline:  # made by the preview thread
            order += [f"preview {e.content.kind}" for e in client.poll_events(0.2)
                      if isinstance(e.content, m.InstructionPreviewEvent) and e.content.preview_id == preview_id]
        job_id = client.start_edit(edit_request(upload(client, scene), reconstruction_steps=100, total_steps=2000,
                                                every=4, outputs=("images",))).job_id
        watch = JobWatch(job_id)
        final = None
        while final is None and time.monotonic() < deadline:
            events = client.poll_events(0.2)
            watch.take(events)
            for event in events:
                content = event.content
                if isinstance(content, m.JobStateEvent) and content.job_id == job_id:
                    order.append(f"job {content.state}")
                if isinstance(content, m.InstructionPreviewEvent) and content.preview_id == preview_id:
                    order.append(f"preview {content.kind}")
                    final = content.kind if content.kind in ("grid", "failed") else None
        client.cancel(job_id)
        watch.follow(client, lambda w: "cancelled" in w.states, timeout_s=300)
    assert final == "grid", order
    # the job did not wait for the grid: it was running when the preview's last cell was made (by the job)
    assert order.index("job reconstructing") < order.index("preview grid"), order
    assert f"[{job_id}] loading editor" not in backend.log(), backend.log()[-3000:]  # it took the preview's editor
    assert backend.log().count("editor 'tiny' ready") - loads_before <= 1, backend.log()[-3000:]


def test_the_previews_of_a_client_that_disconnected_stop(backend):
    """Nobody would see them: a gone client's grids kept the editor (and a job's steps) busy for minutes. The server
    notices at its next send to the client (a heartbeat, for a subscribed one) and stops them before their next DDIM
    step, a queued one before it starts."""
    view = np.zeros((32, 32, 3), np.uint8)
    client = backend.client()
    client.snapshot(None)  # subscribed: heartbeats every second
    previews = [client.request(long_preview(view), [view.tobytes()]).preview_id for _ in range(2)]
    client.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(f"{p} failed: cancelled" in backend.log() for p in previews):
        time.sleep(0.2)
    log = backend.log()
    assert all(f"instruction preview {p} failed: cancelled" in log for p in previews), log[-2000:]
    assert "its 2 2D previews stop" in log
    with backend.client() as other:  # the preview thread is free for the next client
        assert other.ping() > 0
