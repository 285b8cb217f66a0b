"""Publish/subscribe: ``wskit.pubsub.v1.json`` and ``wskit.pubsub.v1.msgpack``.

Topics are dot-separated names (``ticks.EURUSD``). A subscription may be a
pattern: ``*`` stands for one segment, a final ``**`` for one or more. Events
travel through the hub under ``pubsub.<topic>``; application code publishes
with ``app.services["pubsub"].publish(topic, data)`` on either backend.
"""

from __future__ import annotations

from typing import Any

import txaio

from wskit.auth import glob_match
from wskit.hub import Hub
from wskit.settings import AppSettings

from .base import BAD_FIELD, FORBIDDEN, TOO_MANY, UNAVAILABLE, BadMessage, TypedMessageHandler, require_name



def check_topic(topic: str, allow_pattern: bool) -> str:
    """Raise :class:`BadMessage` unless ``topic`` is a well-formed topic (or pattern)."""
    segments = topic.split(".")
    for i, segment in enumerate(segments):
        if not segment:
            raise BadMessage(BAD_FIELD, f"topic {topic!r} has an empty segment")
        if "*" in segment:
            if not allow_pattern:
                raise BadMessage(BAD_FIELD, f"cannot publish to a pattern ({topic!r})")
            if segment != "*" and not (segment == "**" and i == len(segments) - 1):
                raise BadMessage(BAD_FIELD, f"in {topic!r}: '*' must be a whole segment "
                                            "('**' only as the last one)")
    return topic


class PubSubService:
    """Topics of one app; :meth:`publish` is the server-side API.

    Topics the server alone feeds can be reserved with :meth:`server_only`
    (or ``AppSettings.server_only_topics``): clients may subscribe to them
    but never publish to them.

    >>> from wskit.hub import InProcessHub
    >>> PubSubService(InProcessHub()).publish("ticks.EURUSD", {"bid": 1.08})
    0
    """

    topic_prefix = "pubsub."

    def __init__(self, hub: Hub, settings: AppSettings | None = None):
        self.hub = hub
        self.settings = settings or AppSettings()
        # What the max_topics cap counts: topic or pattern -> how many subscribe to it.
        self._subscriber_counts: dict[str, int] = {}
        self._subscriptions: dict[Any, set[str]] = {}  # subscriber -> its topics and patterns
        self._server_only: list[str] = list(self.settings.server_only_topics)

    def server_only(self, *patterns: str) -> None:
        """Reserve topics for the server's own publishes: a client's publish to a
        topic matching one of ``patterns`` (``*`` = any characters) is refused
        with ``forbidden``, with or without authentication.

        >>> from wskit.hub import InProcessHub
        >>> service = PubSubService(InProcessHub())
        >>> service.server_only("ticks.*")
        >>> service.is_server_only("ticks.demo"), service.is_server_only("chat.news")
        (True, False)
        """
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"a server-only topic pattern must be a non-empty string, not {pattern!r}")
            if pattern not in self._server_only:
                self._server_only.append(pattern)

    def is_server_only(self, topic: str) -> bool:
        return any(glob_match(pattern, topic) for pattern in self._server_only)

    @property
    def topic_count(self) -> int:
        """Distinct topics and patterns with at least one subscriber (what ``max_topics`` caps)."""
        return len(self._subscriber_counts)

    def hub_topic(self, topic: str) -> str:
        return self.topic_prefix + topic

    def publish(self, topic: str, data: Any) -> int:
        """Send ``{"type": "event", "topic": topic, "data": data}`` to its subscribers.

        Returns the number of subscribers reached in this process (with a
        shared hub, delivery here and on other servers follows once the hub
        has relayed the event). ``data`` must be encodable by both
        serializers (JSON values; bytes reach JSON subscribers base64-encoded).
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        try:
            check_topic(topic, allow_pattern=False)
        except BadMessage as exc:
            raise ValueError(exc.message) from None
        return self.hub.publish(self.hub_topic(topic), {None: {"type": "event", "topic": topic, "data": data}})

    def subscribe(self, topic: str, subscriber: Any) -> None:
        """Subscribe to a topic or pattern; :class:`BadMessage` ``too-many`` past ``max_topics``."""
        mine = self._subscriptions.get(subscriber)
        if mine is None or topic not in mine:
            cap = self.settings.max_topics
            if cap and topic not in self._subscriber_counts and len(self._subscriber_counts) >= cap:
                raise BadMessage(TOO_MANY, f"the server is at its limit of {cap} topics and patterns "
                                           "subscribed to: subscribe to one of those or try later")
            self._subscriber_counts[topic] = self._subscriber_counts.get(topic, 0) + 1
            self._subscriptions.setdefault(subscriber, set()).add(topic)
        if "*" in topic:
            self.hub.subscribe_pattern(self.hub_topic(topic), subscriber)
        else:
            self.hub.subscribe(self.hub_topic(topic), subscriber)

    def unsubscribe(self, topic: str, subscriber: Any) -> None:
        mine = self._subscriptions.get(subscriber)
        if mine is not None and topic in mine:
            mine.discard(topic)
            if not mine:
                del self._subscriptions[subscriber]
            left = self._subscriber_counts[topic] - 1
            if left:
                self._subscriber_counts[topic] = left
            else:
                del self._subscriber_counts[topic]
        if "*" in topic:
            self.hub.unsubscribe_pattern(self.hub_topic(topic), subscriber)
        else:
            self.hub.unsubscribe(self.hub_topic(topic), subscriber)

    def unsubscribe_all(self, subscriber: Any) -> None:
        for topic in list(self._subscriptions.get(subscriber, ())):
            self.unsubscribe(topic, subscriber)
        self.hub.unsubscribe_all(subscriber)


class PubSubHandler(TypedMessageHandler):
    """One pubsub connection (json or msgpack)."""

    message_types = ("subscribe", "unsubscribe", "publish")

    def _topic(self, msg: dict, allow_pattern: bool) -> str:
        return check_topic(require_name(msg, "topic", self.settings.max_name_length), allow_pattern)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.topics: set[str] = set()

    def on_subscribe(self, msg: dict) -> Any:
        topic = self._topic(msg, allow_pattern=True)
        return self.when_allowed("subscribe", topic, msg, lambda: self._subscribe(topic, msg))

    def _subscribe(self, topic: str, msg: dict) -> Any:
        limit = self.settings.max_subscriptions
        if limit and topic not in self.topics and len(self.topics) >= limit:
            raise BadMessage(TOO_MANY, f"already subscribed to {limit} topics: unsubscribe first")
        self.service.subscribe(topic, self)
        self.topics.add(topic)
        hub = self.service.hub
        if not getattr(hub, "shared", False):
            self.send(self.reply({"type": "subscribed", "topic": topic}, msg))
            return None
        # A shared hub answers once Redis relays the topic here: from then on no event is missed
        # (without Redis, the events of this server arrive all the same).
        relayed = txaio.as_future(hub.when_subscribed, self.service.hub_topic(topic))
        answered = txaio.create_future()

        def answer(_: Any) -> None:
            self.send(self.reply({"type": "subscribed", "topic": topic}, msg))
            txaio.resolve(answered, None)

        txaio.add_callbacks(relayed, answer, answer)
        return answered

    def on_unsubscribe(self, msg: dict) -> None:
        topic = self._topic(msg, allow_pattern=True)
        self.service.unsubscribe(topic, self)
        self.topics.discard(topic)
        self.send(self.reply({"type": "unsubscribed", "topic": topic}, msg))

    def on_publish(self, msg: dict) -> None:
        topic = self._topic(msg, allow_pattern=False)
        if "data" not in msg:
            raise BadMessage(BAD_FIELD, "missing field 'data'")
        if self.service.is_server_only(topic):
            raise BadMessage(FORBIDDEN, f"topic {topic!r} is published by the server only")
        data = msg["data"]
        self.when_allowed("publish", topic, msg, lambda: self._publish(topic, data))

    def _publish(self, topic: str, data: Any) -> None:
        hub = self.service.hub
        self.service.publish(topic, data)
        if hub.shared and not hub.connected:
            raise BadMessage(UNAVAILABLE, "delivered to this server's subscribers only: the hub cannot "
                                          "reach the other servers right now")

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.service.unsubscribe_all(self)
