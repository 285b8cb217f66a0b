"""Pub/sub client for ``wskit.pubsub.v1.*``.

Example::

    async with wskit.connect(url, subprotocols=PubSubClient.subprotocols()) as conn:
        ps = PubSubClient(conn)
        await ps.subscribe("ticks.*")
        await ps.publish("ticks.EURUSD", {"bid": 1.0841})
        async for event in ps:          # {"type": "event", "topic": ..., "data": ...}
            print(event["topic"], event["data"])
"""

from __future__ import annotations

from typing import Any

from .base import TypedRequestClient


class PubSubClient(TypedRequestClient):
    app = "pubsub"

    def subscribe(self, topic: str) -> Any:
        """Fires with the ``subscribed`` reply once events on ``topic`` (or pattern) will arrive."""
        return self._typed_request({"type": "subscribe", "topic": topic})

    def unsubscribe(self, topic: str) -> Any:
        return self._typed_request({"type": "unsubscribe", "topic": topic})

    def publish(self, topic: str, data: Any) -> Any:
        """Send an event to ``topic``'s subscribers (this client too, if subscribed)."""
        return self.connection.send({"type": "publish", "topic": topic, "data": data})
