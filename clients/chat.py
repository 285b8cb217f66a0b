"""Chat client for ``wskit.chat.v1.*`` and ``wskit.chat.v2.*``.

Example (asyncio; the same under Twisted's ``ensureDeferred``)::

    async with wskit.connect(url, subprotocols=ChatClient.subprotocols(2)) as conn:
        chat = ChatClient(conn)
        joined = await chat.join("lobby", "ann")      # members, and history in v2
        await chat.say("lobby", "hello")
        async for msg in chat:                         # message / presence objects
            print(msg)
"""

from __future__ import annotations

from typing import Any

from .base import TypedRequestClient


class ChatClient(TypedRequestClient):
    app = "chat"

    def join(self, room: str, nick: str) -> Any:
        """Fires with the ``joined`` reply; fails with :class:`RequestError` (e.g. ``nick-taken``)."""
        return self._typed_request({"type": "join", "room": room, "nick": nick})

    def leave(self, room: str) -> Any:
        """Fires with the ``left`` reply; fails with :class:`RequestError` (``not-joined``)."""
        return self._typed_request({"type": "leave", "room": room})

    def say(self, room: str, text: str) -> Any:
        """Send a message; it comes back to every member, this one included, as a ``message``."""
        return self.connection.send({"type": "say", "room": room, "text": text})
