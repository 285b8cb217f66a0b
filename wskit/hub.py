"""Broadcast hub: who hears what, independent of transport and process.

Protocol code publishes through the :class:`Hub` interface only, so the
in-process implementation here can be replaced by a multi-process one (Redis
pub/sub, say) without touching a subprotocol.

A subscriber is any object with ``deliver(topic, event)``. ``event`` is an
opaque object the publisher built (usually a :class:`wskit.broadcast.Broadcast`
that serializes itself once per wire format), so the hub never serializes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import txaio


@runtime_checkable
class Subscriber(Protocol):
    def deliver(self, topic: str, event: Any) -> None: ...


class Hub(Protocol):
    """The broadcast interface subprotocols are written against."""

    def subscribe(self, topic: str, subscriber: Subscriber) -> None: ...

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None: ...

    def unsubscribe_all(self, subscriber: Subscriber) -> None: ...

    def publish(self, topic: str, event: Any) -> int: ...

    def subscribers(self, topic: str) -> Iterable[Subscriber]: ...

    def topics(self) -> Iterable[str]: ...


class InProcessHub:
    """Hub for one process: a dict of topic -> subscribers (insertion ordered).

    ``publish`` delivers synchronously; each subscriber's ``deliver`` only
    queues bytes on its own transport, so one slow peer cannot stall the rest.
    A subscriber whose ``deliver`` raises is logged and skipped.
    """

    def __init__(self) -> None:
        self._topics: dict[str, dict[Subscriber, None]] = {}
        self._by_subscriber: dict[Subscriber, set[str]] = {}

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

    def unsubscribe_all(self, subscriber: Subscriber) -> None:
        for topic in list(self._by_subscriber.get(subscriber, ())):
            self.unsubscribe(topic, subscriber)

    def publish(self, topic: str, event: Any) -> int:
        members = self._topics.get(topic)
        if not members:
            return 0
        delivered = 0
        for subscriber in list(members):
            try:
                subscriber.deliver(topic, event)
                delivered += 1
            except Exception:
                txaio.make_logger().failure(
                    "wskit hub: delivery on {topic} failed: {log_failure.value}",
                    failure=txaio.create_failure(),
                    topic=topic,
                )
        return delivered

    def subscribers(self, topic: str) -> list[Subscriber]:
        return list(self._topics.get(topic, ()))

    def topics(self) -> list[str]:
        return list(self._topics)

    def subscriptions(self, subscriber: Subscriber) -> set[str]:
        return set(self._by_subscriber.get(subscriber, ()))
