"""Chat client for ``wskit.chat.v1.*`` and ``wskit.chat.v2.*``.

Example (asyncio; the same under Twisted's ``ensureDeferred``)::

    async with wskit.connect(url, subprotocols=ChatClient.subprotocols(2)) as conn:
        chat = ChatClient(conn)
        joined = await chat.join("lobby", "ann")      # members, and history in v2
        await chat.say("lobby", "hello")
        async for msg in chat:                         # message / presence objects
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
    app = "chat"

    def __init__(self, connection: Any, positions: dict[str, tuple[int, str | None]] | None = None):
        super().__init__(connection)
        # room -> (offset, epoch) of the last message received there (v2).
        self.positions: dict[str, tuple[int, str | None]] = positions if positions is not None else {}

    def join(self, room: str, nick: str, since: int | None = None, epoch: str | None = None) -> Any:
        """Fires with the ``joined`` reply; fails with :class:`RequestError` (e.g. ``nick-taken``).

        v2: without ``since``, a room this client has a position in is joined
        from there (the answer's ``history`` holds what was missed).
        """
        msg: dict[str, Any] = {"type": "join", "room": room, "nick": nick}
        if self.version >= 2:
            if since is None and room in self.positions:
                since, epoch = self.positions[room]
            if since is not None:
                msg["since"] = since
                if epoch is not None:
                    msg["epoch"] = epoch
        return self._typed_request(msg)

    def _intercept(self, msg: Any) -> bool:
        # Positions move in the order messages arrive (a join's answer included).
        if isinstance(msg, dict) and msg.get("type") in ("message", "joined"):
            offset, room = msg.get("offset"), msg.get("room")
            if isinstance(offset, int) and isinstance(room, str):
                self.positions[room] = (offset, msg.get("epoch"))
        return super()._intercept(msg)

    def leave(self, room: str) -> Any:
        """Fires with the ``left`` reply; fails with :class:`RequestError` (``not-joined``)."""
        return self._typed_request({"type": "leave", "room": room})

    def say(self, room: str, text: str) -> Any:
        """Send a message; it comes back to every member, this one included, as a ``message``."""
        return self.connection.send({"type": "say", "room": room, "text": text})
