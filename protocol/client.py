"""Client: request/reply with Lazy-Pirate retries, pushed events, heartbeats, chunked upload and download.

Use it from ONE thread (the add-on's worker thread): ZeroMQ sockets are not thread-safe. Events that arrive while a
request waits for its reply are queued and returned by :meth:`Client.poll_events`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from . import messages as m
from .connection import ConnectionInfo
from .errors import BadSignature, ProtocolError, RequestTimeout, ValidationError
from .signing import BufferLike
from .upload import DEFAULT_CHUNK_BYTES, AuxUpload, MeshUpload, RawImage, begin_request, plan_chunks, scene_sha256
from .version import PROTOCOL_VERSION
from .wire import Limits, Message, Session, new_id

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""``callback(done_bytes, total_bytes)``"""


@dataclass(frozen=True)
class Received:
    """A message from the server with its typed content (``content`` is a :mod:`protocol.messages` dataclass)."""

    message: Message
    content: Any

    @property
    def msg_type(self) -> str:
        return self.message.msg_type


class Client:
    """One connection to a backend server (a DEALER socket whose routing id is the session id)."""

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        limits: Limits | None = None,
        context: zmq.Context[Any] | None = None,
        client_name: str = "in2n-blender client",
    ) -> None:
        self.info = info
        self.timeout_s = timeout_s
        """Seconds to wait for each reply attempt."""
        self.retries = retries
        """Extra attempts after a timeout (each on a fresh socket, same msg_id)."""
        self.client_name = client_name
        self.session = Session(info.key_bytes, limits=limits)
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket[Any] | None = None
        self.events: deque[Received] = deque(maxlen=10000)
        self.last_heard: float | None = None
        """``time.monotonic()`` of the last valid message from the server (heartbeats included)."""
        self.dropped = 0
        """Messages from the server that were discarded (stale or duplicate replies, undecodable frames)."""
        self.server: m.HelloReply | None = None

    # ------------------------------------------------------------------ socket life cycle
    def _ensure_socket(self) -> zmq.Socket[Any]:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, self.session.routing_id)
            sock.setsockopt(zmq.MAXMSGSIZE, self.session.limits.max_frame_bytes)
            sock.connect(self.info.url)
            self._socket = sock
        return self._socket

    def reconnect(self) -> None:
        """Drop the socket (and anything queued in it); the next call opens a fresh one."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def close(self) -> None:
        self.reconnect()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ receiving
    def _receive(self, timeout_s: float) -> Received | None:
        """One decoded message, or None on timeout / a discarded message. A wrong key raises BadSignature."""
        sock = self._ensure_socket()
        if not sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            return None
        frames = sock.recv_multipart(copy=False)
        try:
            message = self.session.deserialize(frames)
            content = m.parse(message)
        except BadSignature as exc:
            # the server answers a message it could not verify (a wrong key, say) unsigned: what it says is only
            # ever raised, as the error of the request it answers
            unsigned = self.session.read_unsigned_error(frames)
            if unsigned is not None:
                try:
                    error = m.parse(unsigned)
                except ProtocolError:
                    error = None
                if isinstance(error, m.ErrorReply):  # never an event, never an "ok"
                    return Received(unsigned, error)
            raise BadSignature(f"server message rejected: {exc.message}", field=exc.field) from None
        except ProtocolError as exc:  # a duplicate reply to a retried request, or a peer bug: not fatal
            self.dropped += 1
            log.debug("dropped a server message: %s", exc)
            return None
        self.last_heard = time.monotonic()
        return Received(message, content)

    def poll_events(self, timeout_s: float = 0.0) -> list[Received]:
        """Queued events plus whatever arrives within ``timeout_s``; stray replies are dropped."""
        deadline = time.monotonic() + timeout_s
        while True:
            received = self._receive(max(0.0, deadline - time.monotonic()))
            if received is not None:
                if m.spec_for(received.msg_type).kind == "event":
                    self.events.append(received)
                else:
                    self.dropped += 1
            if received is None and (self.events or time.monotonic() >= deadline):
                break
            if self._socket is not None and not self._socket.poll(0, zmq.POLLIN) and self.events:
                break
        drained = list(self.events)
        self.events.clear()
        return drained

    # ------------------------------------------------------------------ request / reply
    def request_raw(
        self,
        content: Any,
        buffers: Sequence[BufferLike] = (),
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> Received:
        """Send a request and wait for its reply (Lazy Pirate). Raises the remote error, or RequestTimeout."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        attempts = 1 + (self.retries if retries is None else retries)
        msg_id = new_id()
        for attempt in range(attempts):
            # Same msg_id on every attempt (the server answers a duplicate from its reply cache and never runs it
            # twice); a fresh date gives a fresh signature, so the retry is not mistaken for a replay.
            message = m.build(self.session, content, buffers=buffers, msg_id=msg_id)
            self.session.send(self._ensure_socket(), message)
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                received = self._receive(remaining)
                if received is None:
                    continue
                if received.message.parent_header.get("msg_id") == msg_id and m.spec_for(received.msg_type).kind == "reply":
                    m.raise_for_error(received.content)
                    return received
                if m.spec_for(received.msg_type).kind == "event":
                    self.events.append(received)
                else:
                    self.dropped += 1  # a late reply to an earlier request
            log.info("no reply to %s after %.1f s (attempt %d/%d)", m.msg_type_of(content), timeout, attempt + 1, attempts)
            self.reconnect()
        raise RequestTimeout(
            f"no reply from {self.info.url} to {m.msg_type_of(content)} after {attempts} attempts of {timeout:.1f} s "
            "(is the backend running?)"
        )

    def request_pipelined(
        self,
        requests: Iterable[tuple[Any, Sequence[BufferLike]]],
        *,
        window: int = 3,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> Iterator[Received]:
        """Send requests with up to ``window`` in flight and yield their replies in order.

        Keeps both ends busy (signing the next chunk overlaps the server verifying the last). On a timeout every
        unanswered request is resent with its msg_id (the server answers duplicates from its reply cache).
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        attempts_left = self.retries if retries is None else retries
        pending: OrderedDict[str, tuple[Any, Sequence[BufferLike]]] = OrderedDict()
        answered: dict[str, Received] = {}
        source = iter(requests)
        exhausted = False
        deadline = time.monotonic() + timeout
        while True:
            while not exhausted and len(pending) < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                msg_id = new_id()
                pending[msg_id] = item
                self.session.send(self._ensure_socket(), m.build(self.session, item[0], buffers=item[1], msg_id=msg_id))
                if len(pending) == 1:
                    deadline = time.monotonic() + timeout
            if not pending:
                return
            oldest = next(iter(pending))
            if oldest in answered:
                pending.pop(oldest)
                deadline = time.monotonic() + timeout
                yield answered.pop(oldest)
                continue
            received = self._receive(max(0.0, deadline - time.monotonic()))
            if received is not None:
                parent = received.message.parent_header.get("msg_id")
                kind = m.spec_for(received.msg_type).kind
                if kind == "reply" and parent in pending:
                    m.raise_for_error(received.content)
                    answered[str(parent)] = received
                elif kind == "event":
                    self.events.append(received)
                else:
                    self.dropped += 1
                continue
            if time.monotonic() < deadline:
                continue
            if attempts_left <= 0:
                raise RequestTimeout(f"no reply from {self.info.url} to {m.msg_type_of(pending[oldest][0])} (is the backend running?)")
            attempts_left -= 1
            log.info("pipelined request timed out; resending %d requests", len(pending))
            self.reconnect()
            for msg_id, (content, buffers) in pending.items():
                if msg_id not in answered:
                    self.session.send(self._ensure_socket(), m.build(self.session, content, buffers=buffers, msg_id=msg_id))
            deadline = time.monotonic() + timeout

    def request(self, content: Any, buffers: Sequence[BufferLike] = (), **kwargs: Any) -> Any:
        """Like :meth:`request_raw` but returns only the typed reply content."""
        return self.request_raw(content, buffers, **kwargs).content

    # ------------------------------------------------------------------ conveniences
    def hello(self) -> m.HelloReply:
        reply = self.request(m.HelloRequest(protocol_versions=[PROTOCOL_VERSION], client_name=self.client_name))
        assert isinstance(reply, m.HelloReply)
        self.server = reply
        return reply

    def ping(self, payload: str = "") -> float:
        """Round-trip time in seconds."""
        start = time.perf_counter()
        reply = self.request(m.PingRequest(payload=payload))
        if not isinstance(reply, m.PingReply) or reply.payload != payload:
            raise ValidationError("ping reply does not echo the payload", field="content.payload")
        return time.perf_counter() - start

    def shutdown(self, reason: str = "") -> None:
        self.request(m.ShutdownRequest(reason=reason))

    def upload_scene(
        self,
        cameras: Sequence[m.Camera],
        images: Sequence[RawImage],
        *,
        aux: Sequence[AuxUpload] = (),
        meshes: Sequence[MeshUpload] = (),
        upload_id: str | None = None,
        scene_name: str = "",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        window: int = 3,
        progress: ProgressCallback | None = None,
        **metadata: Any,
    ) -> m.SceneEndReply:
        """Upload cameras + images (+ ``aux`` images per view, + ``meshes`` to bake onto) in chunks (``window`` in flight); returns the
        ``scene_end_reply`` (``scene_id``).

        ``progress(done_bytes, total_bytes)`` is called after each acknowledged chunk."""
        upload_id = upload_id or new_id()
        begin = begin_request(upload_id, cameras, images, scene_name, aux, meshes, **metadata)
        # upload order: main images, auxiliary ones, then meshes
        in_order: list[RawImage | MeshUpload] = [*images, *(item.image for item in aux), *meshes]
        reply = self.request(begin)
        assert isinstance(reply, m.SceneBeginReply)
        total, done = begin.total_bytes, 0
        checksum: list[str] = []
        # hashlib releases the GIL: the checksum is computed while the chunks are on their way
        hasher = threading.Thread(target=lambda: checksum.append(scene_sha256(in_order)), daemon=True)
        hasher.start()
        chunks = plan_chunks(in_order, upload_id, min(chunk_bytes, reply.max_chunk_bytes))
        for received in self.request_pipelined(chunks, window=window):
            assert isinstance(received.content, m.SceneChunkReply)
            done = received.content.received_bytes
            if progress is not None:
                progress(done, total)
        hasher.join()
        end = self.request(m.SceneEndRequest(upload_id=upload_id, sha256=checksum[0]))
        assert isinstance(end, m.SceneEndReply)
        return end

    def start_edit(self, request: m.EditStartRequest) -> m.EditStartReply:
        reply = self.request(request)
        assert isinstance(reply, m.EditStartReply)
        return reply

    def cancel(self, job_id: str) -> m.CancelReply:
        reply = self.request(m.CancelRequest(job_id=job_id))
        assert isinstance(reply, m.CancelReply)
        return reply

    def snapshot(self, job_id: str | None = None, *, subscribe: bool = True) -> m.JobSnapshotReply:
        reply = self.request(m.JobSnapshotRequest(job_id=job_id, subscribe=subscribe))
        assert isinstance(reply, m.JobSnapshotReply)
        return reply

    def fetch_result(
        self,
        job_id: str,
        name: str,
        destination: str | os.PathLike[str],
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download one artifact in chunks to ``destination`` (atomically), checking its SHA-256. A failed or
        interrupted download leaves neither ``destination`` nor its ``.part`` file behind."""
        target = Path(destination)
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        offset, expected = 0, ""
        try:
            with open(partial, "wb") as handle:
                while True:
                    received = self.request_raw(
                        m.ResultFetchRequest(job_id=job_id, name=name, offset=offset, length=chunk_bytes))
                    reply = received.content
                    assert isinstance(reply, m.ResultFetchReply)
                    data = received.message.buffers[0]
                    handle.write(data)
                    digest.update(data)
                    offset += reply.length
                    expected = reply.sha256
                    if progress is not None:
                        progress(offset, reply.size)
                    if reply.eof or offset >= reply.size:
                        break
            if digest.hexdigest() != expected:
                raise ValidationError(f"{name}: downloaded bytes do not match the server's SHA-256", field="sha256")
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return target
