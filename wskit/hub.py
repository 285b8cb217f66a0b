"""Broadcast hub: who hears what, independent of transport and process.

Protocol code publishes through the :class:`Hub` interface only, so the
in-process implementation here can be replaced by one that crosses processes
(:class:`wskit.redis_hub.RedisHub`) without touching a subprotocol.

**What crosses the hub.** A publisher hands the hub data that could travel to
another process: a topic, the message in each wire *shape* its recipients may
need (``{shape_key: message}`` of plain JSON/msgpack values, e.g. chat's
``{1: v1_message, 2: v2_message}``), and optionally the *id* of one
connection that must not receive it (``exclude``: a string from
:func:`new_connection_id`, never a Python object). The receiving side (the
same process for :class:`InProcessHub`, every subscribed process for a Redis
hub) builds one :class:`wskit.broadcast.Broadcast` from those shapes and fans
it out to its local subscribers, so each process serializes once per shape
and serializer and frames once.

Topics are exact strings; patterns (``subscribe_pattern``) are dot-separated
with ``*`` matching exactly one segment and a final ``**`` matching one or
more (``ticks.*`` matches ``ticks.EURUSD``; ``ticks.**`` also ``ticks.fx.EURUSD``).
A subscriber hears a publish at most once, however many of its subscriptions
match it: exact subscribers first, then pattern ones, each in the order they
subscribed (patterns in the order they were first subscribed to).

A subscriber is any object with ``deliver(topic, event)`` (``event`` is the
:class:`~wskit.broadcast.Broadcast`) and, if it may be excluded from a
publish, a ``hub_id`` attribute holding its connection id.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import txaio

from .broadcast import Broadcast
from . import metrics
from .logs import log_failure


@runtime_checkable
class Subscriber(Protocol):
    def deliver(self, topic: str, event: Any) -> None: ...


class Hub(Protocol):
    """The broadcast interface subprotocols are written against.

    ``shared`` says whether the hub reaches other processes (and then offers
    the history and presence operations of :class:`wskit.redis_hub.RedisHub`);
    ``connected`` whether it reaches them right now.
    """

    shared: bool

    @property
    def connected(self) -> bool: ...

    def subscribe(self, topic: str, subscriber: Subscriber) -> None: ...

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None: ...

    def subscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None: ...

    def unsubscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None: ...

    def unsubscribe_all(self, subscriber: Subscriber) -> None: ...

    def publish(self, topic: str, shapes: Mapping[Hashable, Any], exclude: str | None = None, *,
                offset: int | None = None, epoch: str | None = None) -> int: ...

    def subscribers(self, topic: str) -> Iterable[Subscriber]: ...

    def topics(self) -> Iterable[str]: ...

    def start(self) -> Any: ...

    def stop(self) -> Any: ...


# -- connection ids ------------------------------------------------------------------

_process: tuple[int, str] | None = None
_counter = itertools.count(1)


def process_id() -> str:
    """A random id of this process (a new one after ``fork``), unique across hosts."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, secrets.token_hex(6))
    return _process[1]


def new_connection_id() -> str:
    """An id for one connection, unique across processes: ``<process id>.<counter>``.

    >>> a, b = new_connection_id(), new_connection_id()
    >>> a != b and a.split(".")[0] == b.split(".")[0] == process_id()
    True
    """
    return f"{process_id()}.{next(_counter)}"


def process_of(connection_id: str) -> str:
    """The process part of a connection id."""
    return connection_id.partition(".")[0]


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``*`` is one dot-separated segment; a final ``**`` is one or more.

    The reference definition of what a pattern matches (a Redis hub would
    translate the same rules); :class:`InProcessHub` matches with a
    :class:`PatternIndex` instead, which gives the same answers.
    """
    segments = pattern.split(".")
    parts = []
    for i, segment in enumerate(segments):
        if segment == "**" and i == len(segments) - 1:
            parts.append(r"[^.]+(?:\.[^.]+)*")
        elif segment == "*":
            parts.append(r"[^.]+")
        else:
            parts.append(re.escape(segment))
    return re.compile(r"\.".join(parts) + r"\Z")


class PatternEntry:
    """One pattern's subscribers; ``order`` says when the pattern was first subscribed to."""

    __slots__ = ("pattern", "order", "subscribers")

    def __init__(self, pattern: str, order: int):
        self.pattern = pattern
        self.order = order
        self.subscribers: dict[Subscriber, None] = {}


class _Node:
    """A trie node: one position among a pattern's dot-separated segments."""

    __slots__ = ("children", "star", "entry", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}  # literal segments
        self.star: _Node | None = None  # a `*` segment
        self.entry: PatternEntry | None = None  # a pattern ends here
        self.rest: PatternEntry | None = None  # a pattern ends here with a final `**`

    def empty(self) -> bool:
        return not self.children and self.star is None and self.entry is None and self.rest is None


class PatternIndex:
    """Patterns in a trie over dot-separated segments, so a lookup costs the
    topic's segments times the trie nodes they reach, not the number of patterns.

    Same rules as :func:`compile_pattern`: a ``*`` segment matches one non-empty
    segment, a final ``**`` one or more non-empty segments, and every other
    segment itself (a ``**`` that is not last, or ``a*``, is literal).
    """

    def __init__(self) -> None:
        self._root = _Node()
        self._entries: dict[str, PatternEntry] = {}
        self._created = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Any:
        return iter(self._entries)

    def get(self, pattern: str) -> PatternEntry | None:
        return self._entries.get(pattern)

    def add(self, pattern: str) -> PatternEntry:
        """The entry of ``pattern``, created (and placed in the trie) if new."""
        entry = self._entries.get(pattern)
        if entry is not None:
            return entry
        self._created += 1
        entry = self._entries[pattern] = PatternEntry(pattern, self._created)
        node = self._root
        segments = pattern.split(".")
        last = len(segments) - 1
        for i, segment in enumerate(segments):
            if segment == "**" and i == last:
                node.rest = entry
                return entry
            if segment == "*":
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                node = node.children.setdefault(segment, _Node())
        node.entry = entry
        return entry

    def remove(self, pattern: str) -> None:
        """Forget ``pattern`` and prune the trie nodes only it used."""
        if self._entries.pop(pattern, None) is None:
            return
        path: list[tuple[_Node, str]] = []  # (parent, segment) down to the pattern's node
        node = self._root
        segments = pattern.split(".")
        last = len(segments) - 1
        for i, segment in enumerate(segments):
            if segment == "**" and i == last:
                node.rest = None
                break
            path.append((node, segment))
            node = node.star if segment == "*" else node.children[segment]  # type: ignore[assignment]
        else:
            node.entry = None
        for parent, segment in reversed(path):
            child = parent.star if segment == "*" else parent.children[segment]
            if child is None or not child.empty():
                break
            if segment == "*":
                parent.star = None
            else:
                del parent.children[segment]

    def matching(self, topic: str) -> list[PatternEntry]:
        """The entries whose patterns match ``topic``, in the order they were created."""
        segments = topic.split(".")
        count = len(segments)
        # nonempty_from[i]: segments i.. are all non-empty (what a final `**` needs).
        nonempty_from = [True] * (count + 1)
        for i in range(count - 1, -1, -1):
            nonempty_from[i] = nonempty_from[i + 1] and segments[i] != ""
        found: list[PatternEntry] = []
        frontier = [self._root]
        for i, segment in enumerate(segments):
            following: list[_Node] = []
            for node in frontier:
                if node.rest is not None and nonempty_from[i]:
                    found.append(node.rest)
                child = node.children.get(segment)
                if child is not None:
                    following.append(child)
                if node.star is not None and segment:
                    following.append(node.star)
            if not following:
                break
            frontier = following
        else:
            found.extend(node.entry for node in frontier if node.entry is not None)
        if len(found) > 1:
            found.sort(key=lambda entry: entry.order)
        return found


class InProcessHub:
    """Hub for one process: a dict of topic -> subscribers (insertion ordered).

    ``publish`` builds one :class:`~wskit.broadcast.Broadcast` and delivers it
    synchronously; each subscriber's ``deliver`` only queues bytes on its own
    transport, so one slow peer cannot stall the rest. A subscriber whose
    ``deliver`` raises is logged and skipped.

    Patterns live in a :class:`PatternIndex`, so a publish costs the topic's
    segments plus the patterns that match, however many patterns there are.
    """

    shared = False  # reaches this process only
    connected = True

    def __init__(self) -> None:
        self._topics: dict[str, dict[Subscriber, None]] = {}
        self._by_subscriber: dict[Subscriber, set[str]] = {}
        self._patterns = PatternIndex()
        self._patterns_by_subscriber: dict[Subscriber, set[str]] = {}

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._topics.setdefault(topic, {})[subscriber] = None
        self._by_subscriber.setdefault(subscriber, set()).add(topic)

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        members = self._topics.get(topic)
        if members is not None:
            members.pop(subscriber, None)
            if not members:
                del self._topics[topic]
        topics = self._by_subscriber.get(subscriber)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._by_subscriber[subscriber]

    def subscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None:
        self._patterns.add(pattern).subscribers[subscriber] = None
        self._patterns_by_subscriber.setdefault(subscriber, set()).add(pattern)

    def unsubscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None:
        entry = self._patterns.get(pattern)
        if entry is not None:
            entry.subscribers.pop(subscriber, None)
            if not entry.subscribers:
                self._patterns.remove(pattern)
        patterns = self._patterns_by_subscriber.get(subscriber)
        if patterns is not None:
            patterns.discard(pattern)
            if not patterns:
                del self._patterns_by_subscriber[subscriber]

    def unsubscribe_all(self, subscriber: Subscriber) -> None:
        for topic in list(self._by_subscriber.get(subscriber, ())):
            self.unsubscribe(topic, subscriber)
        for pattern in list(self._patterns_by_subscriber.get(subscriber, ())):
            self.unsubscribe_pattern(pattern, subscriber)

    def publish(self, topic: str, shapes: Mapping[Hashable, Any], exclude: str | None = None, *,
                offset: int | None = None, epoch: str | None = None) -> int:
        """Deliver ``shapes`` to the subscribers of ``topic`` (but not to connection ``exclude``).

        Returns the number of subscribers it was delivered to.
        """
        members = self.subscribers(topic)
        if not members:
            return 0
        return self.fan_out(topic, Broadcast(shapes, exclude=exclude, offset=offset, epoch=epoch), members)

    def fan_out(self, topic: str, event: Broadcast, members: list[Subscriber] | None = None) -> int:
        """Hand a built ``event`` to this process's subscribers of ``topic``: the receiving half of a publish."""
        if members is None:
            members = self.subscribers(topic)
        if getattr(event, "topic", True) is None:
            event.topic = topic  # its broadcasts share a compressor (wskit.shared_deflate)
        exclude = event.exclude
        recorder = metrics.recorder()
        if recorder.enabled:
            recorder.hub_delivered(getattr(event, "published_at", None))
        delivered = 0
        for subscriber in members:
            if exclude is not None and getattr(subscriber, "hub_id", None) == exclude:
                continue
            try:
                subscriber.deliver(topic, event)
                delivered += 1
            except Exception:
                log_failure(
                    txaio.make_logger(),
                    txaio.create_failure(),
                    "wskit hub: delivery on {topic} failed: {log_failure.value}",
                    topic=topic,
                )
        return delivered

    def has_exact(self, topic: str) -> bool:
        """Whether anyone subscribes to ``topic`` itself (not through a pattern)."""
        return topic in self._topics

    def has_pattern(self, pattern: str) -> bool:
        return self._patterns.get(pattern) is not None

    def subscribers(self, topic: str) -> list[Subscriber]:
        """Who hears a publish on ``topic``: exact subscribers, then pattern ones, each once."""
        exact = self._topics.get(topic)
        if not self._patterns:
            return list(exact) if exact else []
        members = dict(exact) if exact else {}
        for entry in self._patterns.matching(topic):
            members.update(entry.subscribers)
        return list(members)

    def topics(self) -> list[str]:
        return list(self._topics) + list(self._patterns)

    def subscriptions(self, subscriber: Subscriber) -> set[str]:
        return set(self._by_subscriber.get(subscriber, ())) | set(
            self._patterns_by_subscriber.get(subscriber, ())
        )

    def start(self) -> None:
        """Nothing to connect to."""

    def stop(self) -> None:
        """Nothing to disconnect from."""
