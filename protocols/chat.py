"""Chat rooms: ``wskit.chat.v1.*`` and ``wskit.chat.v2.*`` (json and msgpack).

Both versions share one :class:`ChatService` per app, so v1 and v2 clients in
the same room see each other, each in its own version's shape and serializer.
v2 adds a message ``id`` and ``ts`` and the room's recent ``history`` on join.
Messages reach room members through the hub (topic ``chat.<room>``), one
:class:`wskit.broadcast.Broadcast` per message carrying both shapes.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from wskit.broadcast import Broadcast
from wskit.hub import Hub
from wskit.settings import AppSettings

from .base import (
    ALREADY_JOINED,
    NICK_TAKEN,
    NOT_JOINED,
    TOO_MANY,
    BadMessage,
    TypedMessageHandler,
    require_name,
    require_str,
)



class Room:
    def __init__(self, name: str, history_size: int):
        self.name = name
        self.members: dict[Any, str] = {}  # member (a handler) -> nick
        self.history: deque[dict] = deque(maxlen=history_size)

    def nicks(self) -> list[str]:
        return list(self.members.values())


class ChatService:
    """Rooms of one app: membership, history, delivery through the hub.

    Members are per-connection handlers (hub subscribers). Application code may
    post into a room too::

        app.services["chat"].post("lobby", "server", "maintenance at noon")

    A room exists while it has members; its history goes with it.
    """

    topic_prefix = "chat."

    def __init__(self, hub: Hub, settings: AppSettings | None = None,
                 clock: Callable[[], float] = time.time):
        self.hub = hub
        self.settings = settings or AppSettings()
        self.clock = clock
        self.rooms: dict[str, Room] = {}

    def topic(self, room: str) -> str:
        return self.topic_prefix + room

    def members(self, room: str) -> list[str]:
        found = self.rooms.get(room)
        return found.nicks() if found else []

    def history(self, room: str) -> list[dict]:
        found = self.rooms.get(room)
        return list(found.history) if found else []

    def rooms_of(self, member: Any) -> list[str]:
        return [name for name, room in self.rooms.items() if member in room.members]

    def _broadcast(self, room: str, shapes: dict, exclude: Any = None) -> int:
        event = Broadcast(shapes, exclude=exclude)
        return self.hub.publish(self.topic(room), event)

    def join(self, member: Any, room: str, nick: str) -> Room:
        limit = self.settings.max_subscriptions
        if limit and room not in self.rooms_of(member) and len(self.rooms_of(member)) >= limit:
            raise BadMessage(TOO_MANY, f"already in {limit} rooms: leave one first")
        found = self.rooms.get(room)
        if found is not None:
            if member in found.members:
                raise BadMessage(ALREADY_JOINED, f"already in room {room!r} as {found.members[member]!r}")
            if nick in found.members.values():
                raise BadMessage(NICK_TAKEN, f"nick {nick!r} is taken in room {room!r}")
        else:
            found = self.rooms[room] = Room(room, self.settings.history_size)
        found.members[member] = nick
        self.hub.subscribe(self.topic(room), member)
        presence = {"type": "presence", "room": room, "nick": nick, "event": "join"}
        self._broadcast(room, {None: presence}, exclude=member)
        return found

    def leave(self, member: Any, room: str) -> str:
        found = self.rooms.get(room)
        if found is None or member not in found.members:
            raise BadMessage(NOT_JOINED, f"not in room {room!r}")
        nick = found.members.pop(member)
        self.hub.unsubscribe(self.topic(room), member)
        if found.members:
            presence = {"type": "presence", "room": room, "nick": nick, "event": "leave"}
            self._broadcast(room, {None: presence})
        else:
            del self.rooms[room]
        return nick

    def leave_all(self, member: Any) -> None:
        for room in self.rooms_of(member):
            self.leave(member, room)

    def nick_in(self, member: Any, room: str) -> str:
        found = self.rooms.get(room)
        if found is None or member not in found.members:
            raise BadMessage(NOT_JOINED, f"not in room {room!r}: join it first")
        return found.members[member]

    def say(self, member: Any, room: str, text: str) -> int:
        return self.post(room, self.nick_in(member, room), text)

    def post(self, room: str, nick: str, text: str) -> int:
        """Deliver a message to ``room``'s members (and its history); returns how many got it."""
        v1 = {"type": "message", "room": room, "from": nick, "text": text}
        v2 = dict(v1, id=uuid.uuid4().hex, ts=self.clock())
        found = self.rooms.get(room)
        if found is not None:
            found.history.append(v2)
        return self._broadcast(room, {1: v1, 2: v2})


class ChatHandler(TypedMessageHandler):
    """One chat connection (any version, any serializer)."""

    message_types = ("join", "leave", "say")

    def on_join(self, msg: dict) -> None:
        limit = self.settings.max_name_length
        room = require_name(msg, "room", limit)
        nick = require_name(msg, "nick", limit)
        joined = self.service.join(self, room, nick)
        reply: dict[str, Any] = {"type": "joined", "room": room, "nick": nick, "members": joined.nicks()}
        if self.version >= 2:
            reply["history"] = list(joined.history)
        self.send(self.reply(reply, msg))

    def on_leave(self, msg: dict) -> None:
        room = require_name(msg, "room", self.settings.max_name_length)
        self.service.leave(self, room)
        self.send(self.reply({"type": "left", "room": room}, msg))

    def on_say(self, msg: dict) -> None:
        room = require_name(msg, "room", self.settings.max_name_length)
        text = require_str(msg, "text", self.settings.max_text_length, allow_empty=True)
        self.service.say(self, room, text)

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.service.leave_all(self)
