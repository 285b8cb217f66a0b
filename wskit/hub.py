"""Broadcast hub: who hears what, independent of transport and process.

Protocol code publishes through the :class:`Hub` interface only, so the
in-process implementation here can be replaced by a multi-process one (Redis
pub/sub, say) without touching a subprotocol.

Topics are exact strings; patterns (``subscribe_pattern``) are dot-separated
with ``*`` matching exactly one segment and a final ``**`` matching one or
more (``ticks.*`` matches ``ticks.EURUSD``; ``ticks.**`` also ``ticks.fx.EURUSD``).
A subscriber hears a publish at most once, however many of its subscriptions
match it.

A subscriber is any object with ``deliver(topic, event)``. ``event`` is an
opaque object the publisher built (usually a :class:`wskit.broadcast.Broadcast`
that serializes itself once per wire format), so the hub never serializes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import re

import txaio

from .logs import log_failure


@runtime_checkable
class Subscriber(Protocol):
    def deliver(self, topic: str, event: Any) -> None: ...


class Hub(Protocol):
    """The broadcast interface subprotocols are written against."""

    def subscribe(self, topic: str, subscriber: Subscriber) -> None: ...

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None: ...

    def subscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None: ...

    def unsubscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None: ...

    def unsubscribe_all(self, subscriber: Subscriber) -> None: ...

    def publish(self, topic: str, event: Any) -> int: ...

    def subscribers(self, topic: str) -> Iterable[Subscriber]: ...

    def topics(self) -> Iterable[str]: ...


def is_pattern(topic: str) -> bool:
    return "*" in topic


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``*`` is one dot-separated segment; a final ``**`` is one or more."""
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


class InProcessHub:
    """Hub for one process: a dict of topic -> subscribers (insertion ordered).

    ``publish`` delivers synchronously; each subscriber's ``deliver`` only
    queues bytes on its own transport, so one slow peer cannot stall the rest.
    A subscriber whose ``deliver`` raises is logged and skipped.
    """

    def __init__(self) -> None:
        self._topics: dict[str, dict[Subscriber, None]] = {}
        self._by_subscriber: dict[Subscriber, set[str]] = {}
        self._patterns: dict[str, tuple[re.Pattern[str], dict[Subscriber, None]]] = {}
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
        entry = self._patterns.get(pattern)
        if entry is None:
            entry = self._patterns[pattern] = (compile_pattern(pattern), {})
        entry[1][subscriber] = None
        self._patterns_by_subscriber.setdefault(subscriber, set()).add(pattern)

    def unsubscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None:
        entry = self._patterns.get(pattern)
        if entry is not None:
            entry[1].pop(subscriber, None)
            if not entry[1]:
                del self._patterns[pattern]
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

    def publish(self, topic: str, event: Any) -> int:
        members = self.subscribers(topic)
        if not members:
            return 0
        delivered = 0
        for subscriber in members:
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

    def subscribers(self, topic: str) -> list[Subscriber]:
        """Who hears a publish on ``topic``: exact subscribers, then pattern ones, each once."""
        members = dict(self._topics.get(topic, {}))
        for regex, pattern_members in self._patterns.values():
            if regex.match(topic):
                members.update(pattern_members)
        return list(members)

    def topics(self) -> list[str]:
        return list(self._topics) + list(self._patterns)

    def subscriptions(self, subscriber: Subscriber) -> set[str]:
        return set(self._by_subscriber.get(subscriber, ())) | set(
            self._patterns_by_subscriber.get(subscriber, ())
        )
