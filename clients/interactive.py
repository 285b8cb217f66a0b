"""The interactive client behind ``wskit connect``.

Lines typed on stdin go out as text messages; messages received are printed,
decoded by the negotiated serializer (JSON text or msgpack binary) when the
subprotocol names one. End of input closes the connection normally. With
``--reconnect`` the session survives server restarts and network failures.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import txaio

from wskit.errors import ConnectionClosed
from wskit.runner import run

from .connection import ClientConnection
from .reconnect import Reconnecting


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


class InteractiveConnection(ClientConnection):
    """A client connection that prints what arrives (nothing queues) and sends typed lines."""

    def __init__(self, out: TextIO = sys.stdout, announce_close: bool = True):
        super().__init__(max_queue=0)
        self.out = out
        self.announce_close = announce_close
        self.announced = False  # its end has been printed
        self.last_activity = time.monotonic()

    def write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_activity

    def _opened(self, protocol: Any) -> None:
        super()._opened(protocol)
        compression = self.compression
        self.write(f"connected: subprotocol={self.subprotocol or 'none'} "
                   f"extensions={json.dumps(compression) if compression else 'none'}")

    def _received(self, payload: bytes, is_binary: bool) -> None:
        self.last_activity = time.monotonic()
        self.write(render_message(payload, is_binary, self.subprotocol))

    def _closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        first = not self.closed
        super()._closed(was_clean, code, reason)
        if first and self.announce_close:
            self.announce_end()

    def announce_end(self) -> None:
        if not self.announced:
            self.announced = True
            self.write(f"closed: code={self.close_code} reason={self.close_reason or ''}")

    def send_line(self, line: str) -> None:
        try:
            payload, is_binary = encode_line(line, self.subprotocol)
        except ValueError as exc:
            self.write(f"! not sent: {self.subprotocol} needs a JSON line ({exc})")
            return
        self.last_activity = time.monotonic()
        # A line the connection can no longer take is lost with it: nothing to report.
        txaio.add_callbacks(self._send(payload, is_binary), None, lambda _fail: None)


def run_interactive(url: str, settings: Any, backend: str = "twisted", stdin: Any = None,
                    out: TextIO = sys.stdout, linger: float = 0.5, reconnect: bool = False,
                    describe: Callable[[BaseException], str] | None = None) -> int:
    """Connect, pump stdin lines out and messages in until either side ends.

    At end of input the connection stays open until nothing has arrived for
    ``linger`` seconds, so replies to the last lines are not lost, then closes
    with 1000. SIGINT/SIGTERM close with 1001.

    With ``reconnect``, a connection lost with a code worth retrying (1001 for
    a restarting server, 1006 for a network failure, ...) or a failed attempt
    prints one line and the session goes on over a new connection, following
    ``settings.reconnect``; lines typed while disconnected are not sent (each
    is refused with a line saying so). ``describe`` words a connection error.

    Returns the process exit code; raises what connecting raised
    (:class:`wskit.HandshakeError`, ``OSError``, ...) when the connection
    cannot be made, or, with ``reconnect``, the error it gave up on.
    """
    stdin = stdin or sys.stdin
    describe = describe or (lambda exc: str(exc) or type(exc).__name__)

    def close_when_quiet(conn: InteractiveConnection) -> None:
        if not conn.is_open:
            return
        quiet = conn.quiet_for()  # read once: a second read could pass linger
        if quiet >= linger:
            conn.close(1000)
        else:
            txaio.call_later(linger - quiet, close_when_quiet, conn)

    async def session(stopping: Any) -> int:
        driver = _driver(backend, url, settings)
        conn = InteractiveConnection(out)
        await driver.open(conn)
        _read_lines(backend, stdin, conn.send_line, lambda: close_when_quiet(conn))
        txaio.add_callbacks(stopping, lambda _: conn.close(1001, "client stopped"), None)
        await conn.wait_closed()
        return 0

    async def reconnecting_session(stopping: Any) -> int:
        iterator = Reconnecting(_driver(backend, url, settings), settings.reconnect,
                                lambda: InteractiveConnection(out, announce_close=False))
        ending: list[str] = []  # end of input or a signal: no further connection
        reading: list[bool] = []  # stdin is read once the first connection is open

        def write(line: str) -> None:
            out.write(line + "\n")
            out.flush()

        def retrying(error: BaseException, delay: float) -> None:
            lost = iterator.connection
            if isinstance(error, ConnectionClosed) and lost is not None:
                lost.announced = True
                write(f"disconnected: code={error.code} reason={error.reason}; reconnecting in {delay:.2f} s")
            else:
                write(f"connect failed: {describe(error)}; retrying in {delay:.2f} s")

        def send(line: str) -> None:
            conn = iterator.connection
            if conn is None or not conn.is_open:
                write(f"! not sent (disconnected, reconnecting): {line}")
            else:
                conn.send_line(line)

        def end_of_input() -> None:
            ending.append("eof")
            conn = iterator.connection
            if conn is not None and conn.is_open:
                close_when_quiet(conn)
            else:
                iterator.aclose()

        def stop(_: Any) -> None:
            ending.append("signal")
            iterator.aclose(1001, "client stopped")

        iterator.on_retry.append(retrying)
        txaio.add_callbacks(stopping, stop, None)
        try:
            async for conn in iterator:
                if not reading:
                    reading.append(True)
                    _read_lines(backend, stdin, send, end_of_input)
                await conn.wait_closed()
                if ending:
                    break
        except ConnectionClosed:
            pass  # closed with a code that is not retried: said below
        last = iterator.connection
        if last is not None and last.closed:
            last.announce_end()
        return 0

    return run(reconnecting_session if reconnect else session, backend)


def _driver(backend: str, url: str, settings: Any) -> Any:
    if backend == "asyncio":
        from ._asyncio import Driver

        return Driver(url, settings)
    from ._twisted import Driver

    return Driver(url, settings)


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
