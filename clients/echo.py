"""Client-side echo: every message received goes back unchanged.

This is the client the Autobahn fuzzingserver drives through every case.
"""

from __future__ import annotations

from wskit.handler import Handler


class EchoClientHandler(Handler):
    subprotocol = "wskit.echo"

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        self.connection.send_message(payload, is_binary)
