"""A demo price ticker published on pub/sub, so the demo page has something live to show.

Backend-neutral: timers go through ``txaio.call_later`` and events through
``app.services["pubsub"].publish(topic, data)``; nothing here imports a
reactor or an event loop. The server starts it with the listening socket and
stops it on shutdown (``--ticker-interval 0`` turns it off).

While nobody is subscribed to the topic a tick costs one timer wake-up and a
dictionary lookup: no prices are computed and nothing is published.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

import txaio

TICKER_TOPIC = "ticks.demo"
# Made-up symbols with starting prices; the page shows one row per symbol.
SYMBOLS: tuple[tuple[str, float], ...] = (("WSKT", 100.0), ("ABHN", 42.0), ("TWST", 23.5), ("AIO", 7.25))


class DemoTicker:
    """Publishes a random walk of a few made-up prices on ``topic`` every ``interval`` seconds.

    Each tick publishes one event per symbol with data
    ``{"symbol": "WSKT", "price": 100.12, "change": 0.12, "time": 1700000000.0, "seq": 7}``.

    ``has_subscribers(topic)``, when given, lets the ticker skip idle ticks.
    """

    def __init__(
        self,
        publish: Callable[[str, Any], Any],
        interval: float = 1.0,
        topic: str = TICKER_TOPIC,
        has_subscribers: Callable[[str], bool] | None = None,
        seed: int | None = None,
    ):
        if interval <= 0:
            raise ValueError(f"ticker interval must be > 0 seconds, not {interval}")
        self.publish = publish
        self.interval = interval
        self.topic = topic
        self.has_subscribers = has_subscribers
        self.prices = dict(SYMBOLS)
        self.seq = 0
        self._random = random.Random(seed)
        self._call: Any = None

    def start(self) -> None:
        if self._call is None:
            self._call = txaio.call_later(self.interval, self._tick)

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def _tick(self) -> None:
        self._call = txaio.call_later(self.interval, self._tick)
        if self.has_subscribers is not None and not self.has_subscribers(self.topic):
            return
        for event in self.next_events():
            self.publish(self.topic, event)

    def next_events(self) -> list[dict[str, Any]]:
        """Advance every price one step and return the events for this tick."""
        self.seq += 1
        now = round(time.time(), 3)
        events = []
        for symbol, old in self.prices.items():
            # A small multiplicative random walk that never reaches zero.
            new = round(max(0.01, old * (1 + self._random.gauss(0, 0.004))), 2)
            self.prices[symbol] = new
            events.append({"symbol": symbol, "price": new, "change": round(new - old, 2),
                           "time": now, "seq": self.seq})
        return events


def _subscriber_check(pubsub: Any) -> Callable[[str], bool] | None:
    """The pub/sub service's "is anyone listening on this topic" question, if it can answer it."""
    method = getattr(pubsub, "has_subscribers", None)
    if callable(method):
        return method
    # wskit's PubSubService: ask its hub who would hear a publish on the topic.
    hub, hub_topic = getattr(pubsub, "hub", None), getattr(pubsub, "hub_topic", None)
    if hub is not None and callable(hub_topic):
        return lambda topic: bool(hub.subscribers(hub_topic(topic)))
    return None


def demo_ticker_for(app: Any) -> DemoTicker | None:
    """The ticker ``app``'s settings ask for, or None (interval 0, or no pub/sub service)."""
    interval = app.settings.ticker_interval
    pubsub = app.services.get("pubsub")
    if not interval or pubsub is None:
        return None
    reserve = getattr(pubsub, "server_only", None)
    if callable(reserve):
        reserve(TICKER_TOPIC)  # clients subscribe to the ticks; only the server publishes them
    return DemoTicker(pubsub.publish, interval, has_subscribers=_subscriber_check(pubsub))


__all__ = ["SYMBOLS", "TICKER_TOPIC", "DemoTicker", "demo_ticker_for"]
