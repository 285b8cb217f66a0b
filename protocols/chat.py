"""Chat rooms: ``wskit.chat.v1.*`` and ``wskit.chat.v2.*`` (json and msgpack).

Both versions share one :class:`ChatService` per app, so v1 and v2 clients in
the same room see each other, each in its own version's shape and serializer.
v2 adds a message ``id`` and ``ts`` and the room's recent ``history`` on join.
Messages reach room members through the hub (topic ``chat.<room>``), one
:class:`wskit.broadcast.Broadcast` per message carrying both shapes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from wskit.broadcast import Broadcast
from wskit.hub import Hub
from wskit.settings import AppSettings

from .base import (
    ALREADY_JOINED,
    BAD_FIELD,
    FORBIDDEN,
    NICK_TAKEN,
    NOT_JOINED,
    TOO_MANY,
    BadMessage,
    TypedMessageHandler,
    has_control_characters,
    require_name,
    require_str,
)



def encoded_size(message: dict) -> int:
    """A history message's size as a join answer carries it, approximated by its
    compact JSON encoding (msgpack is a little smaller)."""
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"))


class Room:
    def __init__(self, name: str, history_size: int, now: float = 0.0):
        self.name = name
        self.members: dict[Any, str] = {}  # member (a handler) -> nick
        self.history: deque[dict] = deque(maxlen=history_size)
        self._history_sizes: deque[int] = deque(maxlen=history_size)  # encoded_size of each, in step
        self.last_active = now  # on the service's idle clock: joins, leaves and messages

    def nicks(self) -> list[str]:
        return list(self.members.values())

    def remember(self, message: dict) -> None:
        self.history.append(message)
        self._history_sizes.append(encoded_size(message))

    def recent_history(self, max_bytes: int = 0) -> list[dict]:
        """The newest messages whose encoded sizes add up to at most ``max_bytes``
        (0: no byte cap), oldest first: older messages are dropped first."""
        if not max_bytes:
            return list(self.history)
        kept, total = 0, 0
        for size in reversed(self._history_sizes):
            if total + size > max_bytes:
                break
            total += size
            kept += 1
        return list(self.history)[len(self.history) - kept:]


def _check_unicode(field: str, value: str) -> None:
    # A lone surrogate would sit in history and fail every later v2 joiner's encoding.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{field} is not valid Unicode text (lone surrogate)") from None


class ChatService:
    """Rooms of one app: membership, history, delivery through the hub.

    Members are per-connection handlers (hub subscribers). Application code may
    post into a room too::

        app.services["chat"].post("lobby", "server", "maintenance at noon")

    A room is in :attr:`rooms` while it has members. When the last one leaves,
    a room with history moves to :attr:`retained`, so whoever joins it next
    still gets its recent history (v2). At most ``max_retained_rooms`` empty
    rooms are kept, the least recently active dropped first, and with a
    ``room_ttl`` an empty room is forgotten that many seconds after its last
    activity (checked when it is looked up and whenever another room is
    retained: no timers). ``idle_clock`` (monotonic seconds) measures that;
    ``clock`` stamps v2 messages (epoch seconds). Both can be replaced in tests.

    Each member's rooms are indexed, so joining, leaving and closing cost the
    rooms of that member, not the rooms of the server.
    """

    topic_prefix = "chat."

    def __init__(self, hub: Hub, settings: AppSettings | None = None,
                 clock: Callable[[], float] = time.time,
                 idle_clock: Callable[[], float] = time.monotonic):
        self.hub = hub
        self.settings = settings or AppSettings()
        self.clock = clock
        self.idle_clock = idle_clock
        self.rooms: dict[str, Room] = {}  # rooms with members
        # Empty rooms kept for their history, least recently active first.
        self.retained: OrderedDict[str, Room] = OrderedDict()
        self._rooms_of: dict[Any, dict[str, None]] = {}  # member -> its rooms, in joining order

    def topic(self, room: str) -> str:
        return self.topic_prefix + room

    def members(self, room: str) -> list[str]:
        found = self.rooms.get(room)
        return found.nicks() if found else []

    def history(self, room: str) -> list[dict]:
        found = self.rooms.get(room) or self._retained(room)
        return list(found.history) if found else []

    def rooms_of(self, member: Any) -> list[str]:
        return list(self._rooms_of.get(member, ()))

    # -- retained empty rooms -------------------------------------------------

    def _expired(self, room: Room, now: float) -> bool:
        ttl = self.settings.room_ttl
        return bool(ttl) and now - room.last_active > ttl

    def _retained(self, name: str) -> Room | None:
        """The retained room ``name``, unless it is missing or has outlived ``room_ttl``."""
        found = self.retained.get(name)
        if found is not None and self._expired(found, self.idle_clock()):
            del self.retained[name]
            return None
        return found

    def _retain(self, room: Room, now: float) -> None:
        """Keep the history of ``room``, which just lost its last member, within the bounds."""
        limit = self.settings.max_retained_rooms
        if not limit or not room.history:
            return
        self.retained[room.name] = room
        # Least recently active first, so the expired ones are at the front.
        while self.retained and self._expired(next(iter(self.retained.values())), now):
            self.retained.popitem(last=False)
        while len(self.retained) > limit:
            self.retained.popitem(last=False)

    # -- membership -------------------------------------------------------------

    def _broadcast(self, room: str, shapes: dict, exclude: Any = None) -> int:
        event = Broadcast(shapes, exclude=exclude)
        return self.hub.publish(self.topic(room), event)

    def join(self, member: Any, room: str, nick: str) -> Room:
        joined = self._rooms_of.get(member)
        limit = self.settings.max_subscriptions
        if limit and joined and room not in joined and len(joined) >= limit:
            raise BadMessage(TOO_MANY, f"already in {limit} rooms: leave one first")
        found = self.rooms.get(room)
        if found is not None:
            if member in found.members:
                raise BadMessage(ALREADY_JOINED, f"already in room {room!r} as {found.members[member]!r}")
            if nick in found.members.values():
                raise BadMessage(NICK_TAKEN, f"nick {nick!r} is taken in room {room!r}")
        else:
            cap = self.settings.max_rooms
            if cap and len(self.rooms) >= cap:
                raise BadMessage(TOO_MANY, f"the server is at its limit of {cap} rooms in use: "
                                           "join one of them or try later")
            found = self._retained(room)
            if found is not None:
                del self.retained[room]
            else:
                found = Room(room, self.settings.history_size)
            self.rooms[room] = found
        found.members[member] = nick
        found.last_active = self.idle_clock()
        if joined is None:
            joined = self._rooms_of[member] = {}
        joined[room] = None
        self.hub.subscribe(self.topic(room), member)
        presence = {"type": "presence", "room": room, "nick": nick, "event": "join"}
        self._broadcast(room, {None: presence}, exclude=member)
        return found

    def leave(self, member: Any, room: str) -> str:
        found = self.rooms.get(room)
        if found is None or member not in found.members:
            raise BadMessage(NOT_JOINED, f"not in room {room!r}")
        nick = found.members.pop(member)
        joined = self._rooms_of[member]
        del joined[room]
        if not joined:
            del self._rooms_of[member]
        self.hub.unsubscribe(self.topic(room), member)
        now = found.last_active = self.idle_clock()
        if found.members:
            presence = {"type": "presence", "room": room, "nick": nick, "event": "leave"}
            self._broadcast(room, {None: presence})
        else:
            del self.rooms[room]
            self._retain(found, now)
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
        """Deliver a message to ``room``'s members (and its history); returns how many got it.

        A retained empty room keeps the message for its next joiner; a room that
        does not exist stores nothing. Raises ValueError for text that is not
        valid Unicode (a lone surrogate), which no serializer could deliver.
        """
        for field, value in (("room", room), ("nick", nick), ("text", text)):
            _check_unicode(field, value)
        v1 = {"type": "message", "room": room, "from": nick, "text": text}
        v2 = dict(v1, id=uuid.uuid4().hex, ts=self.clock())
        found = self.rooms.get(room)
        if found is None:
            found = self._retained(room)
            if found is not None:
                self.retained.move_to_end(room)
        if found is not None:
            found.remember(v2)
            found.last_active = self.idle_clock()
        return self._broadcast(room, {1: v1, 2: v2})


class ChatHandler(TypedMessageHandler):
    """One chat connection (any version, any serializer)."""

    message_types = ("join", "leave", "say")

    def on_join(self, msg: dict) -> None:
        limit = self.settings.max_name_length
        room = require_name(msg, "room", limit)
        nick = self.token_nick()
        if nick is None:  # authentication off: the client picks its nick
            nick = require_name(msg, "nick", limit)
        self.when_allowed("join", room, msg, lambda: self._join(room, nick, msg))

    def _join(self, room: str, nick: str, msg: dict) -> None:
        joined = self.service.join(self, room, nick)
        reply: dict[str, Any] = {"type": "joined", "room": room, "nick": nick, "members": joined.nicks()}
        if self.version >= 2:
            reply["history"] = joined.recent_history(self.settings.max_history_bytes)
        self.send(self.reply(reply, msg))

    def token_nick(self) -> str | None:
        """With authentication on, the nick is the token's ``name`` (else ``sub``),
        whatever the client asks for; None with authentication off."""
        identity = getattr(self.connection, "identity", None)
        if identity is None:
            return None
        nick = identity.display_name
        if not nick:
            raise BadMessage(FORBIDDEN, "the token names no user (no 'name' or 'sub' claim) to chat as")
        if len(nick) > self.settings.max_name_length or has_control_characters(nick):
            raise BadMessage(BAD_FIELD, "the token's name is not usable as a nick (too long or "
                                        "control characters)")
        return nick

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
