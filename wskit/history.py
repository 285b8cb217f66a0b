"""A topic's recent history: offsets, an epoch, and recovery of what a client missed.

Every message stored in a topic's history gets the next **offset** (1, 2, 3,
... one more than the previous message) and carries the topic's **epoch**, a
random string chosen when the history was created. A history that is lost
(an empty room forgotten, a Redis key expired or flushed) comes back with a
new epoch and offsets from 1 again, so an offset is only meaningful together
with its epoch.

A client that saw messages up to offset ``since`` (in epoch ``epoch``) asks
for what came after; :func:`recover` answers exactly those messages, or says
the history was lost (another epoch, or a gap wider than what was kept) and
hands over what is kept. :class:`TopicHistory` is the in-process store;
:mod:`wskit.redis_hub` keeps the same contract in Redis streams.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


def new_epoch() -> str:
    """A fresh random epoch (16 hex characters)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Recovery:
    """What a reader gets: ``entries`` (oldest first), the topic's latest ``offset``
    and ``epoch``, and ``lost`` (None when no ``since`` was asked; True when
    the messages after ``since`` are not all there any more)."""

    entries: list[Any]
    offset: int
    epoch: str
    lost: bool | None = None


def recover(kept: Sequence[tuple[int, Any]], top: int, epoch: str, since: int | None = None,
            since_epoch: str | None = None) -> Recovery:
    """Which of the ``kept`` ``(offset, entry)`` pairs (oldest first) a reader gets.

    Without ``since``: all of them. With ``since``: the entries after it, unless
    ``since_epoch`` names another epoch, ``since`` is past ``top`` (an offset this
    history never gave out), or entries between ``since`` and the oldest kept
    one are gone; then ``lost`` is True and every kept entry is returned.

    >>> kept = [(3, "c"), (4, "d"), (5, "e")]
    >>> recover(kept, 5, "e1", since=3, since_epoch="e1")
    Recovery(entries=['d', 'e'], offset=5, epoch='e1', lost=False)
    >>> recover(kept, 5, "e1", since=1).lost, recover(kept, 5, "e1", since=2).lost
    (True, False)
    >>> recover(kept, 5, "e2", since=4, since_epoch="e1").entries
    ['c', 'd', 'e']
    """
    entries = [entry for _, entry in kept]
    if since is None:
        return Recovery(entries, top, epoch)
    oldest = kept[0][0] if kept else top + 1
    if (since_epoch is not None and since_epoch != epoch) or since > top or since < oldest - 1 or since < 0:
        return Recovery(entries, top, epoch, True)
    return Recovery([entry for offset, entry in kept if offset > since], top, epoch, False)


class TopicHistory:
    """The last ``size`` entries of one topic, in process.

    Iterating yields the stored entries, oldest first. Entries are dicts;
    :meth:`append` stores a copy stamped with ``offset`` and ``epoch``.

    >>> h = TopicHistory(2, epoch="e")
    >>> [h.append({"text": t}) for t in "abc"]
    [1, 2, 3]
    >>> list(h)
    [{'text': 'b', 'offset': 2, 'epoch': 'e'}, {'text': 'c', 'offset': 3, 'epoch': 'e'}]
    >>> h.read(since=2).entries
    [{'text': 'c', 'offset': 3, 'epoch': 'e'}]
    """

    def __init__(self, size: int, epoch: str | None = None):
        self.epoch = epoch or new_epoch()
        self.offset = 0  # the latest offset given out
        self._kept: deque[tuple[int, dict]] = deque(maxlen=size)

    def append(self, entry: dict) -> int:
        """Store ``entry`` under the next offset; returns that offset."""
        self.offset += 1
        if self._kept.maxlen:
            self._kept.append((self.offset, dict(entry, offset=self.offset, epoch=self.epoch)))
        return self.offset

    def read(self, since: int | None = None, since_epoch: str | None = None) -> Recovery:
        return recover(self._kept, self.offset, self.epoch, since, since_epoch)

    def __iter__(self) -> Iterator[dict]:
        return (entry for _, entry in self._kept)

    def __len__(self) -> int:
        return len(self._kept)


__all__ = ["Recovery", "TopicHistory", "new_epoch", "recover"]
