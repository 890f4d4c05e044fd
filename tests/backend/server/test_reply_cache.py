"""The server's reply cache keeps at most its entries and its buffer bytes, evicting the least recently used."""

from __future__ import annotations

from backend.server.reply_cache import IN_PROGRESS, ReplyCache
from protocol import Message


def reply(nbytes: int) -> Message:
    return Message(header={}, content={}, buffers=[b"x" * nbytes])


def test_entries_and_bytes_are_bounded_and_the_oldest_go_first() -> None:
    cache = ReplyCache(max_entries=3, max_bytes=100)
    for number in range(4):
        cache.remember(("s", str(number)), reply(10))
    assert ("s", "0") not in cache and all(("s", str(n)) in cache for n in (1, 2, 3))

    cache.remember(("s", "1"), reply(10))  # used again: now the newest
    cache.remember(("s", "big"), reply(95))  # over the byte bound: the oldest go until it fits
    assert ("s", "big") in cache and ("s", "2") not in cache and ("s", "3") not in cache and ("s", "1") not in cache

    cache.remember(("s", "huge"), reply(500))  # larger than the bound alone: the newest entry always stays
    assert ("s", "huge") in cache and ("s", "big") not in cache

    cache.remember(("s", "pending"), IN_PROGRESS)
    assert ("s", "pending") in cache and cache.get(("s", "pending")) is None
    cache.remember(("s", "pending"), reply(1))  # answered: the in-progress mark is replaced
    assert cache.get(("s", "pending")) is not None
