"""The server core: one ROUTER socket loop with a handler registry, event push and duplicate suppression.

The loop only decodes, dispatches and sends; handlers must return quickly (heavy work runs in job threads that talk
back through the thread-safe :meth:`Server.call_soon`, :meth:`Server.push` and :meth:`Server.publish`).
A handler receives a :class:`Request` and returns reply content (a :mod:`protocol.messages` dataclass), a
``(content, buffers)`` pair, or None when it will call :meth:`Request.reply` later (from any thread).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from protocol import (
    ConnectionInfo,
    Message,
    ProtocolError,
    Session,
    UnknownMessageType,
    check_bind,
    new_key,
)
from protocol import messages as m
from protocol.signing import BufferLike
from protocol.wire import encodable, utc_now

from .config import ServerConfig
from .outbox import Outbox, Sent, outgoing
from .reply_cache import IN_PROGRESS, ReplyCache
from .request import InternalError, Request

log = logging.getLogger(__name__)

HandlerResult = Any  # content | (content, buffers) | None
Handler = Callable[["Request"], HandlerResult]
ALL = "*"
"""Subscription topic that receives every published event."""
SEND_HIGH_WATER_MARK = 16
"""Messages ZeroMQ holds per client; the rest wait in its bounded outbox (:mod:`.outbox`)."""


class Server:
    """A ROUTER socket loop. Create, :meth:`register` handlers, :meth:`bind`, then :meth:`serve_forever` or :meth:`start`."""

    def __init__(self, config: ServerConfig | None = None, *, context: zmq.Context[Any] | None = None) -> None:
        self.config = config or ServerConfig()
        key = new_key() if self.config.key is None else self.config.key
        check_bind(self.config.host, key)
        self.info = ConnectionInfo(host=self.config.host, port=self.config.port, key=key)
        self.session = Session(self.info.key_bytes, limits=self.config.request_limits(), not_before=time.time())
        self.handlers: dict[str, Handler] = {}
        self.started = time.monotonic()
        self.on_shutdown: list[Callable[[], None]] = []
        """Called in the loop thread when the server stops (jobs: cancel and join workers)."""
        self.on_client_gone: list[Callable[[bytes], None]] = []
        """Called in the loop thread with a client's routing id when a send finds it disconnected."""
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket[Any] | None = None
        self._wake_url = f"inproc://server-wake-{id(self)}"
        self._wake_pull: zmq.Socket[Any] | None = None
        self._wake_push: zmq.Socket[Any] | None = None
        self._wake_lock = threading.Lock()
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._replies = ReplyCache(self.config.reply_cache_size, self.config.reply_cache_bytes)
        self._outboxes: dict[bytes, Outbox] = {}
        """Per client (routing id): the messages ZeroMQ did not take yet (loop thread only)."""
        self._subscriptions: dict[bytes, set[str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()

    # ------------------------------------------------------------------ set-up
    def register(self, msg_type: str, handler: Handler) -> None:
        """Handle requests of ``msg_type`` (must be a request type of :mod:`protocol.messages`)."""
        if m.spec_for(msg_type).kind != "request":
            raise ValueError(f"{msg_type} is not a request type")
        self.handlers[msg_type] = handler

    def bind(self) -> ConnectionInfo:
        """Bind the ROUTER socket; returns the connection info with the real port."""
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client (same session id) takes over its identity
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a vanished client raises, so we can unsubscribe it
        sock.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)  # the rest waits in the client's bounded outbox
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.limits.max_frame_bytes)
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        if ":" in self.config.host:
            sock.setsockopt(zmq.IPV6, 1)
        if self.config.port:
            sock.bind(f"tcp://{host}:{self.config.port}")
            port = self.config.port
        else:
            port = sock.bind_to_random_port(f"tcp://{host}", min_port=1024, max_port=65535, max_tries=1000)
        self._socket = sock
        self._wake_pull = self._context.socket(zmq.PULL)
        self._wake_pull.bind(self._wake_url)
        self._wake_push = self._context.socket(zmq.PUSH)
        self._wake_push.connect(self._wake_url)
        self.info = ConnectionInfo(host=self.info.host, port=port, key=self.info.key, pid=os.getpid())
        log.info("listening on %s", self.info.url)
        return self.info

    # ------------------------------------------------------------------ thread-safe API
    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop thread (the only thread that touches the ROUTER socket)."""
        if threading.current_thread() is self._loop_thread():
            fn()
            return
        self._calls.put(fn)
        with self._wake_lock:
            if self._wake_push is not None:
                try:
                    self._wake_push.send(b"", zmq.NOBLOCK)
                except zmq.Again:  # a thousand wake-ups are already waiting: the loop runs this call with them
                    pass

    def push(self, identity: bytes, content: Any, buffers: Sequence[BufferLike] = (), parent: Message | None = None) -> None:
        """Send an event to one client (any thread); b"" (see :attr:`Request.identity`) is no one."""
        if not identity:
            return
        message = m.build(self.session, content, buffers=buffers, parent=parent)
        self.call_soon(lambda: self._send_to(identity, message))

    def publish(self, topic: str, content: Any, buffers: Sequence[BufferLike] = (), parent: Message | None = None) -> None:
        """Send an event to every client subscribed to ``topic`` (e.g. a job id) or to ``ALL`` (any thread)."""
        message = m.build(self.session, content, buffers=buffers, parent=parent)

        def send() -> None:
            for identity, topics in list(self._subscriptions.items()):
                if topic in topics or ALL in topics:
                    self._send_to(identity, message)

        self.call_soon(send)

    def subscribe(self, identity: bytes, topic: str = ALL) -> None:
        if not identity:
            return
        self.call_soon(lambda: self._subscriptions.setdefault(identity, set()).add(topic))

    def outgoing_bytes(self, timeout_s: float = 5.0) -> dict[bytes, int]:
        """Bytes waiting in each client's outbox (asked of the loop thread, which owns them; any thread)."""
        answer: dict[bytes, int] = {}
        done = threading.Event()

        def measure() -> None:
            answer.update({identity: outbox.nbytes for identity, outbox in self._outboxes.items()})
            done.set()

        self.call_soon(measure)
        done.wait(timeout_s)
        return answer

    def unsubscribe(self, identity: bytes, topic: str | None = None) -> None:
        def drop() -> None:
            if topic is None:
                self._subscriptions.pop(identity, None)
            else:
                self._subscriptions.get(identity, set()).discard(topic)

        self.call_soon(drop)

    def stop(self) -> None:
        """Ask the loop to finish (any thread); returns at once."""
        self._stop.set()
        self.call_soon(lambda: None)

    # ------------------------------------------------------------------ running
    def start(self) -> threading.Thread:
        """Run the loop in a daemon thread (binds first if needed)."""
        if self._socket is None:
            self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="in2n-server", daemon=True)
        self._thread.start()
        return self._thread

    def _loop_thread(self) -> threading.Thread | None:
        return self._thread if self._thread is not None else getattr(self, "_serving_thread", None)

    def serve_forever(self) -> None:
        if self._socket is None:
            self.bind()
        assert self._socket is not None and self._wake_pull is not None
        self._serving_thread = threading.current_thread()
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_pull, zmq.POLLIN)
        next_heartbeat = time.monotonic() + self.config.heartbeat_interval_s
        try:
            while not self._stop.is_set():
                timeout_ms = max(0, int((next_heartbeat - time.monotonic()) * 1000))
                waiting = any(outbox.queued for outbox in self._outboxes.values())  # retried every 20 ms
                ready = dict(poller.poll(min(timeout_ms, 20 if waiting else 1000)))
                if self._wake_pull in ready:
                    while self._wake_pull.poll(0):
                        self._wake_pull.recv()
                self._run_calls()
                if self._socket in ready:
                    for _ in range(64):  # bounded batch: keep calls and heartbeats flowing under load
                        if not self._socket.poll(0, zmq.POLLIN):
                            break
                        self._handle_safely(self._socket.recv_multipart(copy=False))
                if waiting:
                    self._flush_outboxes()
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = time.monotonic() + self.config.heartbeat_interval_s
        finally:
            self._close()

    def _run_calls(self) -> None:
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception:
                log.exception("scheduled call failed")

    def _close(self) -> None:
        self._run_calls()  # flush replies and events queued before the stop (e.g. the shutdown reply)
        self._flush_outboxes()
        for hook in self.on_shutdown:
            started = time.monotonic()
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
            log.debug("shutdown hook %s: %.2f s", getattr(hook, "__qualname__", hook), time.monotonic() - started)
        with self._wake_lock:
            for sock in (self._wake_push, self._wake_pull, self._socket):
                if sock is not None:
                    sock.close()
            self._wake_push = self._wake_pull = self._socket = None
        log.info("server stopped")
        self.stopped.set()

    # ------------------------------------------------------------------ message handling
    def _handle_safely(self, frames: list[zmq.Frame]) -> None:
        """No single message may stop the loop: whatever decoding, a handler or the reply's encoding raises is logged
        and answered with an error reply when one can still be built, else the message is dropped."""
        try:
            self._handle_frames(frames)
        except Exception as exc:
            log.exception("message handling failed; the server carries on")
            try:
                idents, delim = self.session.split_idents(frames)
                header = _unverified_header(frames, delim)
                if idents and header:
                    error = InternalError(f"the server could not handle this message ({type(exc).__name__})")
                    reply = m.build_error(self.session, Message(header=header, idents=idents), error)
                    reply.idents = idents
                    self._send_frames(self.session.serialize(reply, signed=False))  # the sender may hold no key
            except Exception:
                log.exception("could not even send an error reply; message dropped")

    def _handle_frames(self, frames: list[zmq.Frame]) -> None:
        try:
            message = self.session.deserialize(frames)
        except ProtocolError as exc:
            self._reject(frames, exc)
            return
        key = (message.header["session"], message.msg_id)
        if key in self._replies:
            cached = self._replies.get(key)
            log.info("duplicate msg_id %s (%s): %s", message.msg_id, message.msg_type, "resending reply" if cached else "still in progress")
            if cached is not None:
                # Re-signed with a fresh date: the client never saw this reply (or it would not resend), and an
                # identical byte copy would look like a replay to a client that did.
                resent = Message(header={**cached.header, "date": utc_now()}, content=cached.content,
                                 parent_header=cached.parent_header, metadata=cached.metadata,
                                 buffers=cached.buffers, idents=message.idents)
                self._send_frames(self.session.serialize(resent))
            return
        try:
            content = m.parse(message)
            spec = m.spec_for(message.msg_type)
            handler = self.handlers.get(message.msg_type)
            if spec.kind != "request" or handler is None:
                raise UnknownMessageType(f"this server does not handle {message.msg_type!r}", field="header.msg_type")
        except ProtocolError as exc:
            self._replies.remember(key, IN_PROGRESS)
            self.send_reply(message, m.build_error(self.session, message, exc))
            return
        self._replies.remember(key, IN_PROGRESS)
        request = Request(self, message, content)
        try:
            result = handler(request)
        except Exception as exc:
            if not isinstance(exc, ProtocolError):
                log.exception("handler for %s failed", message.msg_type)
            request.fail(exc)
            return
        if result is None:
            return  # the handler replies later
        if isinstance(result, tuple):
            request.reply(result[0], result[1])
        else:
            request.reply(result)

    def send_reply(self, request: Message, reply: Message) -> None:
        """Answer ``request`` (server loop only: :class:`Request` calls it through :meth:`call_soon`); the reply is
        cached for a client that asks again."""
        self._replies.remember((request.header["session"], request.msg_id), reply)
        self._queue(reply)

    def _send_to(self, identity: bytes, message: Message) -> None:
        message.idents = [identity]
        self._queue(message)

    def _queue(self, message: Message) -> None:
        """Send through the client's outbox: in order, and bounded while the client does not read."""
        if not message.idents:
            return
        identity = message.idents[0]
        outbox = self._outboxes.get(identity)
        if outbox is None:
            outbox = self._outboxes[identity] = Outbox(self.config.max_outgoing_bytes)
        outbox.put(outgoing(message, self.session.serialize(message)))
        self._flush(identity, outbox)
        if identity in self._outboxes and outbox.overflowing:
            log.warning("client %r reads nothing: its %.0f MiB of waiting replies and events are discarded and its "
                        "subscriptions end (it lists its jobs again)", identity, outbox.nbytes / 2**20)
            self._subscriptions.pop(identity, None)
            del self._outboxes[identity]

    def _flush(self, identity: bytes, outbox: Outbox) -> None:
        outcome = outbox.flush(self._send_frames)
        if outcome is Sent.GONE:  # it reconnects with the same routing id, and lists its jobs
            self._subscriptions.pop(identity, None)
            del self._outboxes[identity]
            for hook in self.on_client_gone:
                try:
                    hook(identity)
                except Exception:
                    log.exception("client-gone hook failed")
        elif outcome is Sent.SENT and identity not in self._subscriptions:
            del self._outboxes[identity]  # a subscriber's is kept: its heartbeats count what it missed

    def _flush_outboxes(self) -> None:
        for identity, outbox in list(self._outboxes.items()):
            if outbox.queued:
                self._flush(identity, outbox)

    def _send_frames(self, frames: list[BufferLike]) -> Sent:
        if self._socket is None:
            return Sent.GONE
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return Sent.SENT
        except zmq.Again:  # the client is not reading: its messages wait in its outbox
            return Sent.FULL
        except zmq.ZMQError as exc:  # the client is gone (EHOSTUNREACH)
            log.info("could not send to %r: %s", frames[0] if frames else b"", exc)
            return Sent.GONE

    def _reject(self, frames: Sequence[zmq.Frame], exc: ProtocolError) -> None:
        """Answer an undecodable message with an error when we know who sent it; otherwise drop it. The error is
        unsigned unless the message proved the key (its signature, date and replay checks passed): a peer without
        the key gets no material signed with it."""
        log.warning("rejected message: %s: %s", exc.ename, exc)
        try:
            idents, delim = self.session.split_idents(frames)
        except ProtocolError:
            return
        if not idents:
            return
        header = _unverified_header(frames, delim)
        reply = m.build_error(self.session, Message(header=header, idents=idents) if header else None, exc)
        reply.idents = idents
        self._send_frames(self.session.serialize(reply, signed=exc.sender_proved_key))

    def _heartbeat(self) -> None:
        if not self._subscriptions:
            return
        for identity in list(self._subscriptions):
            outbox = self._outboxes.get(identity)
            self._send_to(identity, m.build(self.session, m.Heartbeat(
                server_time=utc_now(), interval_s=self.config.heartbeat_interval_s,
                dropped_events=outbox.dropped if outbox is not None else 0)))


def _unverified_header(frames: Sequence[zmq.Frame], delim: int) -> dict[str, Any]:
    """The sender's msg_id/msg_type/session, read without trusting them, so its client can match the error reply."""
    try:
        header = json.loads(frames[delim + 2].bytes.decode("utf-8"))
    except (IndexError, ValueError, RecursionError, AttributeError):
        return {}
    if not isinstance(header, dict):
        return {}
    return {k: header[k] for k in ("msg_id", "msg_type", "session")
            # a lone surrogate echoed back would make the error reply itself unencodable
            if isinstance(header.get(k), str) and len(header[k]) <= 256 and encodable(header[k])}
