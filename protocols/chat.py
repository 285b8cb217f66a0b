"""Chat rooms: ``wskit.chat.v1.*`` and ``wskit.chat.v2.*`` (json and msgpack).

Both versions share one :class:`ChatService` per app, so v1 and v2 clients in
the same room see each other, each in its own version's shape and serializer.
v2 adds a message ``id``, ``ts``, ``offset`` and ``epoch``, and the room's
recent ``history`` on join, from a given offset on when the client asks
(``since``: recovery after a reconnect). Messages reach room members through
the hub (topic ``chat.<room>``) as ``{1: v1_shape, 2: v2_shape}``.

With the in-process hub a room's members, history, offsets and epoch live in
this process (:class:`Room`). With a shared hub (``hub.shared``, e.g. Redis)
they live in the hub, so every server sees the same rooms: joining, saying and
the server-side reads then answer with futures (Deferreds on Twisted).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import txaio

from wskit.errors import HubUnavailable
from wskit.futures import chain, then_both
from wskit.history import Recovery, TopicHistory
from wskit.hub import Hub
from wskit.settings import AppSettings

from .base import (
    ALREADY_JOINED,
    BAD_FIELD,
    FORBIDDEN,
    NICK_TAKEN,
    NOT_JOINED,
    TOO_MANY,
    UNAVAILABLE,
    BadMessage,
    TypedMessageHandler,
    has_control_characters,
    require_name,
    require_str,
    type_name,
)

# With a shared hub a room's history and presence keys expire this long after
# the room's last activity when room_ttl is 0 (in process, 0 means "until
# max_retained_rooms pushes it out", a bound Redis cannot apply across servers).
SHARED_ROOM_TTL = 24 * 3600.0



def encoded_size(message: dict) -> int:
    """A history message's size as a join answer carries it, approximated by its
    compact JSON encoding (msgpack is a little smaller)."""
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"))


def newest_within(messages: list[dict], max_bytes: int) -> list[dict]:
    """The newest ``messages`` whose encoded sizes add up to at most ``max_bytes``
    (0: no byte cap), oldest first: older messages are dropped first, none is cut."""
    if not max_bytes:
        return messages
    kept, total = 0, 0
    for message in reversed(messages):
        total += encoded_size(message)
        if total > max_bytes:
            break
        kept += 1
    return messages[len(messages) - kept:]


class Room:
    """A room as this process sees it: its local members and (in-process hub) its history.

    ``history`` iterates the stored v2 messages, oldest first; it also holds
    the room's ``offset`` (the latest given out) and ``epoch``.
    """

    def __init__(self, name: str, history_size: int, now: float = 0.0):
        self.name = name
        self.members: dict[Any, str] = {}  # member (a handler) -> nick
        self.history = TopicHistory(history_size)
        self.last_active = now  # on the service's idle clock: joins, leaves and messages

    def nicks(self) -> list[str]:
        return list(self.members.values())


@dataclass
class Joined:
    """What a join is answered with: the room's members (all servers) and its history."""

    room: str
    nick: str
    members: list[str]
    recovery: Recovery

    def nicks(self) -> list[str]:
        return self.members

    @property
    def history(self) -> list[dict]:
        return self.recovery.entries


def _check_unicode(field: str, value: str) -> None:
    # A lone surrogate would sit in history and fail every later v2 joiner's encoding.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{field} is not valid Unicode text (lone surrogate)") from None


class ChatService:
    """Rooms of one app: membership, history, delivery through the hub.

    Members are per-connection handlers (hub subscribers with a ``hub_id``).
    Application code may post into a room too::

        app.services["chat"].post("lobby", "server", "maintenance at noon")

    **In-process hub.** A room is in :attr:`rooms` while it has members. When
    the last one leaves, a room with history moves to :attr:`retained`, so
    whoever joins it next still gets its recent history (v2). At most
    ``max_retained_rooms`` empty rooms are kept, the least recently active
    dropped first, and with a ``room_ttl`` an empty room is forgotten that many
    seconds after its last activity (checked when it is looked up and whenever
    another room is retained: no timers). ``idle_clock`` (monotonic seconds)
    measures that; ``clock`` stamps v2 messages (epoch seconds). Both can be
    replaced in tests. A forgotten room comes back with a new epoch.

    **Shared hub** (``hub.shared``: Redis). :attr:`rooms` holds this server's
    members only; history, offsets, epochs and the members on every server
    live in the hub, whose keys expire ``room_ttl`` seconds (default
    :data:`SHARED_ROOM_TTL`) after a room's last activity. :meth:`join`,
    :meth:`say`, :meth:`post`, :meth:`history` and :meth:`members` then
    return futures, which fail with ``unavailable`` while the hub cannot
    reach Redis.

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
        self.shared = bool(getattr(hub, "shared", False))
        self.rooms: dict[str, Room] = {}  # rooms with members (on this server)
        # Empty rooms kept for their history, least recently active first (in-process hub).
        self.retained: OrderedDict[str, Room] = OrderedDict()
        self._rooms_of: dict[Any, dict[str, None]] = {}  # member -> its rooms, in joining order
        if self.shared:
            hub.watch_presence(self.topic_prefix, self._presence_changed)

    def topic(self, room: str) -> str:
        return self.topic_prefix + room

    @property
    def ttl(self) -> float:
        """Seconds a shared hub keeps a room's keys after its last activity."""
        return self.settings.room_ttl or SHARED_ROOM_TTL

    def members(self, room: str) -> Any:
        """The room's nicks in joining order (a future of them with a shared hub)."""
        if self.shared:
            return _unavailable_as_bad_message(txaio.as_future(self.hub.presence, self.topic(room)),
                                               lambda found: [info for _, info in found])
        found = self.rooms.get(room)
        return found.nicks() if found else []

    def history(self, room: str) -> Any:
        """The room's stored v2 messages, oldest first (a future of them with a shared hub)."""
        if self.shared:
            read = txaio.as_future(self.hub.history, self.topic(room), ttl=self.ttl)
            return _unavailable_as_bad_message(read, lambda recovery: recovery.entries)
        found = self.rooms.get(room) or self._retained(room)
        return list(found.history) if found else []

    def rooms_of(self, member: Any) -> list[str]:
        return list(self._rooms_of.get(member, ()))

    # -- retained empty rooms (in-process hub) --------------------------------------

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
        if self.shared or not limit or not room.history:
            return
        self.retained[room.name] = room
        # Least recently active first, so the expired ones are at the front.
        while self.retained and self._expired(next(iter(self.retained.values())), now):
            self.retained.popitem(last=False)
        while len(self.retained) > limit:
            self.retained.popitem(last=False)

    # -- membership -------------------------------------------------------------

    def _presence(self, room: str, nick: str, event: str, exclude: str | None = None) -> int:
        presence = {"type": "presence", "room": room, "nick": nick, "event": event}
        return self.hub.publish(self.topic(room), {None: presence}, exclude)

    def join(self, member: Any, room: str, nick: str, since: int | None = None,
             epoch: str | None = None) -> Any:
        """Add ``member`` to ``room`` as ``nick``; raises :class:`BadMessage` when refused.

        In-process hub: returns the :class:`Room`. Shared hub: returns a future
        of a :class:`Joined` (members on every server, the history after
        ``since`` in ``epoch``), failing with :class:`BadMessage` (``nick-taken``,
        ``unavailable``). Either way the member hears the room from here on.
        """
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
            found = None if self.shared else self._retained(room)
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
        if self.shared:
            return self._join_shared(member, room, nick, since, epoch)
        self._presence(room, nick, "join", exclude=getattr(member, "hub_id", None))
        return found

    def _join_shared(self, member: Any, room: str, nick: str, since: int | None, epoch: str | None) -> Any:
        topic, member_id = self.topic(room), member.hub_id

        def still_there() -> None:
            found = self.rooms.get(room)
            if found is None or member not in found.members:  # left (or closed) meanwhile
                raise BadMessage(NOT_JOINED, f"left room {room!r} before the join was answered")

        def claimed(free: bool) -> Any:
            if not free:
                raise BadMessage(NICK_TAKEN, f"nick {nick!r} is taken in room {room!r}")
            still_there()
            # Read the history once the hub hears the room: no message falls between the two.
            return txaio.as_future(self.hub.when_subscribed, topic)

        def subscribed(_: Any) -> Any:
            still_there()
            # Both reads go out at once (pipelined on the hub's connection).
            history = txaio.as_future(self.hub.history, topic, since=since, since_epoch=epoch, ttl=self.ttl)
            present = txaio.as_future(self.hub.presence, topic)
            return chain(history, lambda recovery: chain(present, lambda found: (recovery, found)))

        def answered(results: tuple) -> Joined:
            recovery, present = results
            still_there()
            self._presence(room, nick, "join", exclude=member_id)
            return Joined(room, nick, [info for _, info in present], recovery)

        def refused(fail: Any) -> Any:
            self._drop(member, room)
            if isinstance(fail.value, HubUnavailable):
                self.hub.presence_leave(topic, member_id)
                return _unavailable()
            return fail

        d = txaio.as_future(self.hub.presence_join, topic, member_id, nick, ttl=self.ttl)
        for callback in (claimed, subscribed, answered):
            d = chain(d, callback)
        # Not add_callbacks(d, None, refused): an asyncio future keeps its outcome whatever the errback does.
        return then_both(d, lambda joined: joined, refused)

    def _drop(self, member: Any, room: str) -> str | None:
        """Forget ``member`` in ``room`` on this server; its nick, or None if it was not there."""
        found = self.rooms.get(room)
        if found is None or member not in found.members:
            return None
        nick = found.members.pop(member)
        joined = self._rooms_of[member]
        del joined[room]
        if not joined:
            del self._rooms_of[member]
        self.hub.unsubscribe(self.topic(room), member)
        now = found.last_active = self.idle_clock()
        if not found.members:
            del self.rooms[room]
            self._retain(found, now)
        return nick

    def leave(self, member: Any, room: str) -> str:
        found = self.rooms.get(room)
        if found is None or member not in found.members:
            raise BadMessage(NOT_JOINED, f"not in room {room!r}")
        nick = self._drop(member, room)
        assert nick is not None
        if self.shared:
            self.hub.presence_leave(self.topic(room), member.hub_id)
            self._presence(room, nick, "leave")
        elif room in self.rooms:
            self._presence(room, nick, "leave")
        return nick

    def leave_all(self, member: Any) -> None:
        for room in self.rooms_of(member):
            self.leave(member, room)

    def nick_in(self, member: Any, room: str) -> str:
        found = self.rooms.get(room)
        if found is None or member not in found.members:
            raise BadMessage(NOT_JOINED, f"not in room {room!r}: join it first")
        return found.members[member]

    def say(self, member: Any, room: str, text: str) -> Any:
        return self.post(room, self.nick_in(member, room), text)

    def post(self, room: str, nick: str, text: str) -> Any:
        """Deliver a message to ``room``'s members (and its history).

        In-process hub: returns how many members got it; a retained empty room
        keeps the message for its next joiner, a room that does not exist
        stores nothing. Shared hub: returns a future of the message's offset
        (stored whether or not anyone is in the room), failing with
        :class:`BadMessage` ``unavailable`` while Redis cannot be reached.
        Raises ValueError for text that is not valid Unicode (a lone
        surrogate), which no serializer could deliver.
        """
        for field, value in (("room", room), ("nick", nick), ("text", text)):
            _check_unicode(field, value)
        v1 = {"type": "message", "room": room, "from": nick, "text": text}
        v2 = dict(v1, id=uuid.uuid4().hex, ts=self.clock())
        if self.shared:
            found = self.rooms.get(room)
            if found is not None:
                found.last_active = self.idle_clock()
            stored = txaio.as_future(self.hub.append, self.topic(room), {1: v1, 2: v2}, stored=2,
                                     size=self.settings.history_size, ttl=self.ttl)
            return _unavailable_as_bad_message(stored, lambda placed: placed[0])
        found = self.rooms.get(room)
        if found is None:
            found = self._retained(room)
            if found is not None:
                self.retained.move_to_end(room)
        if found is None:
            return self.hub.publish(self.topic(room), {1: v1, 2: v2})
        offset = found.history.append(v2)
        found.last_active = self.idle_clock()
        v2.update(offset=offset, epoch=found.history.epoch)
        return self.hub.publish(self.topic(room), {1: v1, 2: v2}, offset=offset, epoch=found.history.epoch)

    def _presence_changed(self, topic: str, member_id: str, nick: str, event: str) -> None:
        """A shared hub found members of a server that stopped (or got them back after an outage)."""
        self._presence(topic[len(self.topic_prefix):], nick, event, exclude=member_id)


def _unavailable() -> BadMessage:
    return BadMessage(UNAVAILABLE, "the chat store cannot be reached right now (the server is "
                                   "reconnecting to it): try again shortly")


def _unavailable_as_bad_message(d: Any, convert: Callable[[Any], Any]) -> Any:
    return then_both(d, convert, lambda fail: _unavailable() if isinstance(fail.value, HubUnavailable) else fail)


def _optional_since(msg: dict) -> tuple[int | None, str | None]:
    since, epoch = msg.get("since"), msg.get("epoch")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        raise BadMessage(BAD_FIELD, f"field 'since' must be an offset (an integer >= 0), not {type_name(since)}")
    if epoch is not None and not isinstance(epoch, str):
        raise BadMessage(BAD_FIELD, f"field 'epoch' must be a string, not {type_name(epoch)}")
    return since, epoch


class ChatHandler(TypedMessageHandler):
    """One chat connection (any version, any serializer)."""

    message_types = ("join", "leave", "say")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Rooms whose join is being answered: what the hub delivers meanwhile waits here.
        self._joining: dict[str, list] = {}

    def deliver(self, topic: str, event: Any) -> None:
        held = self._joining.get(topic[len(self.service.topic_prefix):]) if self._joining else None
        if held is not None:
            held.append(event)
        else:
            super().deliver(topic, event)

    def on_join(self, msg: dict) -> Any:
        limit = self.settings.max_name_length
        room = require_name(msg, "room", limit)
        nick = self.token_nick()
        if nick is None:  # authentication off: the client picks its nick
            nick = require_name(msg, "nick", limit)
        since, epoch = _optional_since(msg) if self.version >= 2 else (None, None)
        return self.when_allowed("join", room, msg, lambda: self._join(msg, room, nick, since, epoch))

    def _join(self, msg: dict, room: str, nick: str, since: int | None, epoch: str | None) -> Any:
        if not self.service.shared:
            found = self.service.join(self, room, nick)
            self._answer_join(msg, Joined(room, nick, found.nicks(), found.history.read(since, epoch)),
                              since is not None)
            return None
        pending = self.service.join(self, room, nick, since, epoch)
        self._joining[room] = []  # nothing the hub relays can have arrived yet

        def answered(joined: Joined) -> None:
            self._answer_join(msg, joined, since is not None)
            self._release(room, joined.recovery)

        def refused(fail: Any) -> Any:
            self._joining.pop(room, None)
            return fail

        txaio.add_callbacks(pending, answered, refused)
        return pending

    def _answer_join(self, msg: dict, joined: Joined, recovering: bool) -> None:
        reply: dict[str, Any] = {"type": "joined", "room": joined.room, "nick": joined.nick,
                                 "members": joined.members}
        if self.version >= 2:
            recovery = joined.recovery
            history = newest_within(recovery.entries, self.settings.max_history_bytes)
            reply["history"] = history
            reply["offset"] = recovery.offset
            reply["epoch"] = recovery.epoch
            if recovering:
                # Cut to the byte cap, the messages since the client's offset are not all there.
                reply["history_lost"] = bool(recovery.lost) or len(history) < len(recovery.entries)
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

    def _release(self, room: str, recovery: Recovery) -> None:
        """Deliver what arrived while the join was answered, minus what its history already held."""
        for event in self._joining.pop(room, ()):
            if event.offset is not None and event.epoch == recovery.epoch and event.offset <= recovery.offset:
                continue
            super().deliver(self.service.topic(room), event)

    def on_leave(self, msg: dict) -> None:
        room = require_name(msg, "room", self.settings.max_name_length)
        self.service.leave(self, room)
        self.send(self.reply({"type": "left", "room": room}, msg))

    def on_say(self, msg: dict) -> Any:
        room = require_name(msg, "room", self.settings.max_name_length)
        text = require_str(msg, "text", self.settings.max_text_length, allow_empty=True)
        result = self.service.say(self, room, text)
        return result if self.service.shared else None

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self._joining.clear()
        self.service.leave_all(self)

