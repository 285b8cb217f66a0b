"""Chat client for ``wskit.chat.v1.*`` and ``wskit.chat.v2.*``.

Example (asyncio; the same under Twisted's ``ensureDeferred``)::

    async with wskit.connect(url, subprotocols=ChatClient.subprotocols(2)) as conn:
        chat = ChatClient(conn)
        joined = await chat.join("lobby", "ann")      # members, and history in v2
        await chat.say("lobby", "hello")
        async for msg in chat:                         # message / presence objects
            print(msg)

Across server restarts and network failures::

    chat = await ChatClient.reconnecting(url, ChatClient.subprotocols(2))
    await chat.join("lobby", "ann")
    async for msg in chat:      # after a reconnection: a "joined" message per room, then the room again
        print(msg)

Recovery (v2): the client remembers, per room, the offset and epoch of the last
message it received (``positions``). Joining a room again, on a new connection
too (``ChatClient(new_conn, positions=old.positions)``), sends them as
``since``/``epoch``, and the ``joined`` answer's ``history`` then holds exactly
the messages missed meanwhile (or says ``history_lost``).
"""

from __future__ import annotations

from typing import Any

from .base import TypedRequestClient


class ChatClient(TypedRequestClient):
    """Remembers the rooms it is in (``rooms``: room -> nick) and re-joins them on a new connection.

    A re-join's ``joined`` reply (members, and in v2 the room's recent history)
    is delivered to readers, in its place among the messages: that is how a
    reader learns that it reconnected and sees what the room kept meanwhile.
    A re-join the server refuses (e.g. ``nick-taken``) is delivered as its
    ``error`` message and the room is forgotten.
    """

    app = "chat"

    def __init__(self, connection: Any, positions: dict[str, tuple[int, str | None]] | None = None):
        self.rooms: dict[str, str] = {}
        # room -> (offset, epoch) of the last message received there (v2).
        self.positions: dict[str, tuple[int, str | None]] = positions if positions is not None else {}
        super().__init__(connection)

    def join(self, room: str, nick: str, since: int | None = None, epoch: str | None = None) -> Any:
        """Fires with the ``joined`` reply; fails with :class:`RequestError` (e.g. ``nick-taken``).

        v2: without ``since``, a room this client has a position in is joined
        from there (the answer's ``history`` holds what was missed): a re-join
        after a reconnection recovers the messages sent meanwhile.
        """
        def joined(reply: dict) -> None:
            if reply.get("type") == "joined":
                self.rooms[room] = nick

        return self._typed_request(self._join_message(room, nick, since, epoch), joined)

    def _join_message(self, room: str, nick: str, since: int | None = None, epoch: str | None = None) -> dict:
        msg: dict[str, Any] = {"type": "join", "room": room, "nick": nick}
        if self.version >= 2:
            if since is None and room in self.positions:
                since, epoch = self.positions[room]
            if since is not None:
                msg["since"] = since
                if epoch is not None:
                    msg["epoch"] = epoch
        return msg

    def _intercept(self, msg: Any) -> bool:
        # Positions move in the order messages arrive (a join's answer included).
        if isinstance(msg, dict) and msg.get("type") in ("message", "joined"):
            offset, room = msg.get("offset"), msg.get("room")
            if isinstance(offset, int) and isinstance(room, str):
                self.positions[room] = (offset, msg.get("epoch"))
        return super()._intercept(msg)

    def leave(self, room: str) -> Any:
        """Fires with the ``left`` reply; fails with :class:`RequestError` (``not-joined``)."""
        return self._typed_request({"type": "leave", "room": room}, lambda _reply: self.rooms.pop(room, None))

    def say(self, room: str, text: str) -> Any:
        """Send a message; it comes back to every member, this one included, as a ``message``."""
        return self.connection.send({"type": "say", "room": room, "text": text})

    def _restore(self) -> list[Any]:
        def rejoined(room: str, nick: str, reply: dict) -> None:
            if reply.get("type") == "joined":
                self.rooms[room] = nick
            else:
                self.rooms.pop(room, None)

        return [self._typed_request(self._join_message(room, nick),
                                    lambda reply, room=room, nick=nick: rejoined(room, nick, reply), deliver="all")
                for room, nick in list(self.rooms.items())]
