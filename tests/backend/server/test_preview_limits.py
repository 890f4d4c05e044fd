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
        assert all(event.kind == "failed" and "cancelled" in event.message for event in stopped.values())
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
