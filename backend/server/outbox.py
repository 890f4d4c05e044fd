"""Each client's outgoing messages, bounded: a client that stops reading costs the server a fixed amount of memory.

ZeroMQ holds a few messages per client (the socket's send high-water mark); the rest wait here. When a client's
waiting messages pass ``max_bytes``, the ones a newer message makes stale go first: a job's progress, a snapshot
export's progress and a heartbeat are merged (only the newest is kept) as they arrive, and the oldest previews (of a
job, or the cells of a 2D preview grid) are dropped. Replies, job states, results, snapshots, logs and final grids are
never dropped: they are few and small, and a client could not recover them. A client that lets twice the bound of
those pile up (e.g. pings it never reads the replies of) is cut off: its outbox is discarded and its subscriptions
end, as when it disconnects. Heartbeats tell the client how many were
merged or dropped so far (``dropped_events``): when that grows, it lists its jobs to catch up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from protocol import Message
from protocol.signing import BufferLike


class Sent(Enum):
    SENT = "sent"
    FULL = "full"
    """ZeroMQ holds as many of this client's messages as it may: try again later."""
    GONE = "gone"
    """The client is no longer connected."""


@dataclass(eq=False)  # compared by identity: two equal progress events are still two messages
class Outgoing:
    frames: list[BufferLike]
    nbytes: int
    stale_when: tuple[Any, ...] | None
    """A newer message with the same key makes this one stale (merged: only the newest is kept)."""
    droppable: bool
    """May be dropped, oldest first, when the client's queue is over its bound."""


def outgoing(message: Message, frames: list[BufferLike]) -> Outgoing:
    content, msg_type = message.content, message.msg_type
    nbytes = sum(memoryview(frame).nbytes for frame in frames)
    stale_when: tuple[Any, ...] | None = None
    droppable = False
    if msg_type in ("job_progress", "heartbeat"):
        stale_when = (msg_type, content.get("job_id"))
    elif msg_type == "nerf_snapshot_export" and content.get("state") in ("queued", "running"):
        stale_when = (msg_type, content.get("job_id"), content.get("step"))
    elif msg_type == "job_preview" or (msg_type == "instruction_preview" and content.get("kind") == "cell"):
        droppable = True
    return Outgoing(frames, nbytes, stale_when, droppable or stale_when is not None)


class Outbox:
    """One client's messages that ZeroMQ did not take yet."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.queued: deque[Outgoing] = deque()
        self.nbytes = 0
        """Bytes of the messages waiting here."""
        self.dropped = 0
        """Events merged or dropped so far (each heartbeat tells the client: when it grows, it lists its jobs)."""
        self._newest: dict[tuple[Any, ...], Outgoing] = {}
        """The waiting message of each merge key."""

    def put(self, item: Outgoing) -> None:
        if item.stale_when is not None:
            stale = self._newest.get(item.stale_when)
            if stale is not None:
                self._remove(stale, count=item.stale_when[0] != "heartbeat")
            self._newest[item.stale_when] = item
        self.queued.append(item)
        self.nbytes += item.nbytes
        while self.nbytes > self.max_bytes:
            oldest = next((queued for queued in self.queued if queued.droppable and queued is not item), None)
            if oldest is None:
                return  # only what must reach the client is left
            self._remove(oldest)

    @property
    def overflowing(self) -> bool:
        """Twice the bound is waiting although everything droppable was dropped: the client does not read."""
        return self.nbytes > 2 * self.max_bytes

    def flush(self, send: Callable[[list[BufferLike]], Sent]) -> Sent:
        """Hand ZeroMQ what it takes, oldest first; the last outcome (``SENT``: nothing is left here)."""
        while self.queued:
            outcome = send(self.queued[0].frames)
            if outcome is not Sent.SENT:
                return outcome
            self._forget(self.queued.popleft())
        return Sent.SENT

    def _remove(self, item: Outgoing, *, count: bool = True) -> None:
        self.queued.remove(item)
        self._forget(item)
        self.dropped += count

    def _forget(self, item: Outgoing) -> None:
        self.nbytes -= item.nbytes
        if item.stale_when is not None and self._newest.get(item.stale_when) is item:
            del self._newest[item.stale_when]
