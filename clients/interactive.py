"""The interactive client behind ``wskit connect``.

Lines typed on stdin go out as text messages; messages received are printed,
decoded by the negotiated serializer (JSON text or msgpack binary) when the
subprotocol names one. End of input closes the connection normally.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import txaio

from wskit.handler import Handler
from wskit.runner import run


def render_message(payload: bytes, is_binary: bool, subprotocol: str | None) -> str:
    """How a received message is printed."""
    if subprotocol and subprotocol.endswith(".msgpack") and is_binary:
        try:
            import msgpack

            obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            return "< " + json.dumps(obj, ensure_ascii=False, default=repr)
        except Exception as exc:  # not valid msgpack: fall back to hex
            return f"< [binary, {len(payload)} bytes, not msgpack: {exc}] {payload[:64].hex()}"
    if is_binary:
        hexed = payload[:64].hex()
        more = "..." if len(payload) > 64 else ""
        return f"< [binary, {len(payload)} bytes] {hexed}{more}"
    return "< " + payload.decode("utf-8", "replace")


def encode_line(line: str, subprotocol: str | None) -> tuple[bytes, bool]:
    """What a typed line becomes on the wire: msgpack subprotocols take JSON lines."""
    if subprotocol and subprotocol.endswith(".msgpack"):
        import msgpack

        return msgpack.packb(json.loads(line), use_bin_type=True), True
    return line.encode("utf-8"), False


class InteractiveHandler(Handler):
    def __init__(self, connection: Any, out: TextIO = sys.stdout):
        super().__init__(connection)
        self.out = out
        self.last_activity = time.monotonic()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_activity

    def on_open(self) -> None:
        conn = self.connection
        self.out.write(f"connected: subprotocol={conn.subprotocol or 'none'} "
                       f"extensions={json.dumps(conn.compression) if conn.compression else 'none'}\n")
        self.out.flush()

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        self.last_activity = time.monotonic()
        self.out.write(render_message(payload, is_binary, self.connection.subprotocol) + "\n")
        self.out.flush()

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.out.write(f"closed: code={code} reason={reason or ''}\n")
        self.out.flush()

    def send_line(self, line: str) -> None:
        try:
            payload, is_binary = encode_line(line, self.connection.subprotocol)
        except ValueError as exc:
            self.out.write(f"! not sent: {self.connection.subprotocol} needs a JSON line ({exc})\n")
            self.out.flush()
            return
        self.last_activity = time.monotonic()
        self.connection.send_message(payload, is_binary)


def run_interactive(url: str, settings: Any, backend: str = "twisted",
                    stdin: Any = None, out: TextIO = sys.stdout, linger: float = 0.5) -> int:
    """Connect, pump stdin lines out and messages in until either side ends.

    At end of input the connection stays open until nothing has arrived for
    ``linger`` seconds, so replies to the last lines are not lost, then closes
    with 1000. SIGINT/SIGTERM close with 1001.

    Returns the process exit code; raises what connecting raised
    (:class:`wskit.HandshakeError`, ``OSError``, ...) when the connection
    cannot be made.
    """
    stdin = stdin or sys.stdin

    async def session(stopping: Any) -> int:
        handlers: list[InteractiveHandler] = []

        def make_handler(conn: Any) -> InteractiveHandler:
            handlers.append(InteractiveHandler(conn, out))
            return handlers[0]

        conn = await _connect(backend, url, settings, make_handler)
        handler = handlers[0]

        def close_when_quiet() -> None:
            if not conn.is_connected:
                return
            quiet = handler.quiet_for()  # read once: a second read could pass linger
            if quiet >= linger:
                conn.close(1000)
            else:
                txaio.call_later(linger - quiet, close_when_quiet)

        _read_lines(backend, stdin, handler.send_line, close_when_quiet)
        txaio.add_callbacks(stopping, lambda _: conn.close(1001, "client stopped"), None)
        await conn.is_closed
        return 0

    return run(session, backend)


async def _connect(backend: str, url: str, settings: Any, make_handler: Any) -> Any:
    if backend == "asyncio":
        from wskit import asyncio as wasyncio

        return await wasyncio.connect(url, settings, make_handler)
    from wskit import twisted as wtwisted

    return await wtwisted.connect(url, settings, make_handler)


def _read_lines(backend: str, stdin: Any, on_line: Any, on_end: Any) -> None:
    """Call ``on_line(text)`` per line of ``stdin`` and ``on_end()`` at its end, on ``backend``'s loop."""
    if backend == "asyncio":
        import asyncio

        class Lines(asyncio.Protocol):
            buffer = b""

            def data_received(self, data: bytes) -> None:
                *lines, self.buffer = (self.buffer + data).split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace").rstrip("\r"))

            def connection_lost(self, exc: Any) -> None:
                if self.buffer:
                    on_line(self.buffer.decode("utf-8", "replace").rstrip("\r"))
                on_end()

        asyncio.ensure_future(asyncio.get_running_loop().connect_read_pipe(Lines, stdin))
        return
    from twisted.internet import stdio
    from twisted.protocols.basic import LineReceiver

    class Input(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            on_line(line.decode("utf-8", "replace").rstrip("\r"))

        def connectionLost(self, reason: Any = None) -> None:
            on_end()

    stdio.StandardIO(Input())
