"""``wskit.echo``: every message comes back unchanged, text as text, binary as binary.

The Autobahn TestSuite testee. Autobahn has already reassembled fragments,
validated UTF-8 and inflated compressed messages before ``on_message``.
"""

from __future__ import annotations

from wskit.handler import Handler


class EchoHandler(Handler):
    subprotocol = "wskit.echo"
    description = "echoes text as text and binary as binary"

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        self.connection.send_message(payload, is_binary)
