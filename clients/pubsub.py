"""Pub/sub client for ``wskit.pubsub.v1.*``.

Example::

    async with wskit.connect(url, subprotocols=PubSubClient.subprotocols()) as conn:
        ps = PubSubClient(conn)
        await ps.subscribe("ticks.*")
        await ps.publish("ticks.EURUSD", {"bid": 1.0841})
        async for event in ps:          # {"type": "event", "topic": ..., "data": ...}
            print(event["topic"], event["data"])

Across server restarts and network failures::

    ps = await PubSubClient.reconnecting(url)
    await ps.subscribe("ticks.*")
    async for event in ps:              # re-subscribed on every new connection
        ...
"""

from __future__ import annotations

from typing import Any

from .base import TypedRequestClient


class PubSubClient(TypedRequestClient):
    """Remembers its subscriptions (``topics``, topics and patterns in order) and renews them
    on a new connection. A renewal the server refuses is delivered to readers as its
    ``error`` message, and the topic is forgotten; events published meanwhile are lost."""

    app = "pubsub"

    def __init__(self, connection: Any):
        self._topics: dict[str, None] = {}  # an ordered set
        super().__init__(connection)

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    def subscribe(self, topic: str) -> Any:
        """Fires with the ``subscribed`` reply once events on ``topic`` (or pattern) will arrive."""
        return self._typed_request({"type": "subscribe", "topic": topic}, lambda reply: self._subscribed(topic, reply))

    def unsubscribe(self, topic: str) -> Any:
        return self._typed_request({"type": "unsubscribe", "topic": topic},
                                   lambda _reply: self._topics.pop(topic, None))

    def publish(self, topic: str, data: Any) -> Any:
        """Send an event to ``topic``'s subscribers (this client too, if subscribed)."""
        return self.connection.send({"type": "publish", "topic": topic, "data": data})

    def _subscribed(self, topic: str, reply: dict) -> None:
        if reply.get("type") == "subscribed":
            self._topics[topic] = None

    def _restore(self) -> list[Any]:
        def renewed(topic: str, reply: dict) -> None:
            if reply.get("type") != "subscribed":
                self._topics.pop(topic, None)

        return [self._typed_request({"type": "subscribe", "topic": topic},
                                    lambda reply, topic=topic: renewed(topic, reply), deliver="errors")
                for topic in list(self._topics)]
