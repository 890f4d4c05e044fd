"""Replies the server keeps for duplicate suppression: a client that resends a request (same session and msg_id:
its first reply was lost) gets the cached reply again instead of running the handler twice."""

from __future__ import annotations

from collections import OrderedDict

from protocol import Message

IN_PROGRESS = None
"""The value cached while a request's handler has not answered yet."""


class ReplyCache:
    """(session, msg_id) -> reply, least recently used first; bounded in entries and in buffer bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._replies: OrderedDict[tuple[str, str], Message | None] = OrderedDict()
        self._bytes = 0

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._replies

    def get(self, key: tuple[str, str]) -> Message | None:
        """The cached reply, or None while the request is in progress (or unknown)."""
        return self._replies.get(key)

    def remember(self, key: tuple[str, str], reply: Message | None) -> None:
        """Cache ``reply`` (None: in progress), evicting the oldest entries beyond the bounds (the newest stays)."""
        previous = self._replies.get(key)
        self._bytes += _buffer_bytes(reply) - _buffer_bytes(previous)
        self._replies[key] = reply
        self._replies.move_to_end(key)
        while len(self._replies) > self.max_entries or (self._bytes > self.max_bytes and len(self._replies) > 1):
            _, evicted = self._replies.popitem(last=False)
            self._bytes -= _buffer_bytes(evicted)


def _buffer_bytes(message: Message | None) -> int:
    return sum(memoryview(b).nbytes for b in message.buffers) if message is not None else 0
