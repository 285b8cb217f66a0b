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

from wskit.handler import Handler


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
        self.connection.sendMessage(payload, is_binary)


def run_interactive(url: str, settings: Any, backend: str = "twisted",
                    stdin: Any = None, out: TextIO = sys.stdout, linger: float = 0.5) -> int:
    """Connect, pump stdin lines out and messages in until either side ends.

    At end of input the connection stays open until nothing has arrived for
    ``linger`` seconds, so replies to the last lines are not lost, then closes
    with 1000.

    Returns the process exit code; raises ``wskit.cli.UserError`` with one
    readable line when the connection cannot be made.
    """
    if backend == "asyncio":
        return _run_asyncio(url, settings, stdin or sys.stdin, out, linger)
    return _run_twisted(url, settings, out, linger)


def _handler_factory(out: TextIO) -> tuple[list[InteractiveHandler], Any]:
    """A handler factory for the client, and the list it keeps the handler in (for stdin)."""
    handlers: list[InteractiveHandler] = []

    def make_handler(conn: Any) -> InteractiveHandler:
        handler = InteractiveHandler(conn, out)
        handlers.append(handler)
        return handler

    return handlers, make_handler


def _connect_error(exc: BaseException, url: str) -> Exception:
    from wskit.cli import UserError, describe_connect_error

    return UserError(describe_connect_error(exc, url))


def _run_twisted(url: str, settings: Any, out: TextIO, linger: float) -> int:
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from wskit import twisted as wtwisted

    state: dict[str, Any] = {"code": 0, "error": None}
    handlers, make_handler = _handler_factory(out)

    class Input(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            handlers[0].send_line(line.decode("utf-8", "replace").rstrip("\r"))

        def connectionLost(self, reason: Any = None) -> None:
            close_when_quiet()

    def close_when_quiet() -> None:
        handler = handlers[0]
        if not handler.connection.is_connected:
            return
        quiet = handler.quiet_for()  # read once: a second read could pass linger
        if quiet >= linger:
            handler.connection.close(1000)
        else:
            reactor.callLater(linger - quiet, close_when_quiet)

    def opened(conn: Any) -> None:
        stdio.StandardIO(Input())
        conn.closed.addBoth(lambda _: reactor.stop())

    def failed(fail: Any) -> None:
        state["error"] = _connect_error(fail.value, url)
        reactor.stop()

    def start() -> None:
        try:
            d = wtwisted.connect(url, settings, make_handler, reactor=reactor)
        except Exception as exc:
            state["error"] = _connect_error(exc, url)
            reactor.stop()
            return
        d.addCallbacks(opened, failed)

    reactor.callWhenRunning(start)
    reactor.run()
    if state["error"] is not None:
        raise state["error"]
    return state["code"]


def _run_asyncio(url: str, settings: Any, stdin: Any, out: TextIO, linger: float) -> int:
    import asyncio

    from wskit import asyncio as wasyncio

    async def main() -> int:
        handlers, make_handler = _handler_factory(out)

        try:
            conn = await wasyncio.connect(url, settings, make_handler)
        except Exception as exc:
            raise _connect_error(exc, url) from None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)

        async def pump() -> None:
            while True:
                line = await reader.readline()
                if not line:
                    break
                handlers[0].send_line(line.decode("utf-8", "replace").rstrip("\r\n"))
            while conn.is_connected and (quiet := handlers[0].quiet_for()) < linger:
                await asyncio.sleep(linger - quiet)
            if conn.is_connected:
                conn.close(1000)

        pump_task = asyncio.ensure_future(pump())
        await conn.closed
        pump_task.cancel()
        return 0

    return asyncio.run(main())
