"""wskit's client against servers answering permessage-deflate validly and invalidly.

A tiny WebSocket server written here (asyncio, raw TCP) answers each handshake
with the Sec-WebSocket-Extensions line its URL names. Valid answers must open:
the server then inflates what the client sends with a strict inflater of the
window it announced (so a client compressing beyond it fails), and echoes it
compressed with its own announced window. Invalid answers must fail the
handshake with wskit.HandshakeError naming the offending parameter. The client
runs in a subprocess per backend (tests/deflate_client_script.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from autobahn.websocket.protocol import WebSocketProtocol

from support import BACKENDS, python_env

pytestmark = pytest.mark.timeout(90)

HERE = Path(__file__).resolve().parent
PD = "permessage-deflate"

# name -> (client profile, the server's Sec-WebSocket-Extensions answer or None)
VALID = {
    "no-extension": ("default", None),
    "bare": ("default", PD),
    "client-window-8": ("default", f"{PD}; client_max_window_bits=8"),
    "client-window-10-server-8": ("default", f"{PD}; server_max_window_bits=8; client_max_window_bits=10"),
    "server-window-15": ("default", f"{PD}; server_max_window_bits=15"),
    "no-context-both": ("default", f"{PD}; server_no_context_takeover; client_no_context_takeover"),
    "quoted-value": ("default", f'{PD}; client_max_window_bits="9"'),
    "strict-accepted": ("strict", f"{PD}; server_no_context_takeover; server_max_window_bits=9"),
    "strict-same": ("strict", f"{PD}; server_max_window_bits=10; server_no_context_takeover"),
}
INVALID = {
    "server-window-larger": ("strict", f"{PD}; server_no_context_takeover; server_max_window_bits=12",
                             "server_max_window_bits=12 is larger than the 10 offered"),
    "server-window-missing": ("strict", f"{PD}; server_no_context_takeover",
                              "server_max_window_bits=10 was offered but is missing from the response"),
    "server-no-context-missing": ("strict", f"{PD}; server_max_window_bits=10",
                                  "server_no_context_takeover was offered but is missing from the response"),
    "unknown-parameter": ("default", f"{PD}; x_foo", "unknown parameter 'x_foo'"),
    "duplicate-parameter": ("default", f"{PD}; client_max_window_bits=9; client_max_window_bits=9",
                            "parameter 'client_max_window_bits' appears 2 times"),
    "server-window-16": ("default", f"{PD}; server_max_window_bits=16",
                         "invalid value '16' for 'server_max_window_bits' (expected 8-15)"),
    "client-window-7": ("default", f"{PD}; client_max_window_bits=7",
                        "invalid value '7' for 'client_max_window_bits' (expected 8-15)"),
    "client-window-without-value": ("default", f"{PD}; client_max_window_bits",
                                    "parameter 'client_max_window_bits' needs a value"),
    "flag-with-value": ("default", f"{PD}; server_no_context_takeover=1",
                        "parameter 'server_no_context_takeover' takes no value"),
    "codec-not-offered": ("default", "permessage-bzip2", "the server answered permessage-bzip2, which was not offered"),
}


def strict_inflate(inflater, data: bytes) -> bytes:
    """Small output steps, so zlib checks every distance against the window (see test_deflate_negotiation)."""
    out, rest = [], data + b"\x00\x00\xff\xff"
    while rest:
        out.append(inflater.decompress(rest, 16))
        rest = inflater.unconsumed_tail
    return b"".join(out)


def frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class FakeServer:
    """Answers /<case> with that case's extension line, then echoes (see the module docstring)."""

    def __init__(self, answers: dict[str, str | None]):
        self.answers = answers
        self.offers: dict[str, str | None] = {}
        self.errors: dict[str, str] = {}
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> FakeServer:
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        case = "?"
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            case = request_line.split()[1].lstrip("/")
            headers = {k.strip().lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in header_lines if ":" in line)}
            self.offers[case] = headers.get("sec-websocket-extensions")
            accept = base64.b64encode(hashlib.sha1(
                headers["sec-websocket-key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
            answer = self.answers[case]
            response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {accept}\r\n")
            if answer:
                response += f"Sec-WebSocket-Extensions: {answer}\r\n"
            writer.write((response + "\r\n").encode())
            await self._echo(reader, writer, answer if answer and answer.startswith(PD) else None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client dropped an invalid handshake: expected for INVALID cases
        except Exception as exc:  # reported by the test
            self.errors[case] = f"{type(exc).__name__}: {exc}"
        finally:
            writer.close()

    async def _echo(self, reader, writer, answer: str | None) -> None:
        params = {}
        if answer:
            (_, params), = WebSocketProtocol._parseExtensionsHeader(None, answer)
        client_bits = int(params["client_max_window_bits"][0]) if "client_max_window_bits" in params else 15
        server_bits = int(params["server_max_window_bits"][0]) if "server_max_window_bits" in params else 15
        client_resets = "client_no_context_takeover" in params
        server_resets = "server_no_context_takeover" in params
        inflater = zlib.decompressobj(-client_bits)
        # zlib cannot compress raw deflate with 8 bits; with 9 its distances stay within 250 bytes.
        deflater = zlib.compressobj(6, zlib.DEFLATED, -max(server_bits, 9))
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            mask = await reader.readexactly(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            opcode, rsv1 = b0 & 0x0F, bool(b0 & 0x40)
            assert b0 & 0x80, "the client fragmented a message"
            if opcode == 8:
                writer.write(frame(8, payload[:2]))
                await writer.drain()
                return
            if rsv1:
                assert answer, "compressed frame without a negotiated extension"
                if client_resets:
                    inflater = zlib.decompressobj(-client_bits)
                payload = strict_inflate(inflater, payload)
            if answer:
                if server_resets:
                    deflater = zlib.compressobj(6, zlib.DEFLATED, -max(server_bits, 9))
                data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)[:-4]
                writer.write(frame(opcode, data, rsv1=True))
            else:
                writer.write(frame(opcode, payload))
            await writer.drain()


@pytest.fixture(scope="module", params=BACKENDS)
def client_run(request):
    """All cases, one client process for this backend."""
    answers = {name: case[1] for name, case in {**VALID, **INVALID}.items()}
    with FakeServer(answers) as server:
        targets = [f"{profile}:ws://127.0.0.1:{server.port}/{name}"
                   for name, (profile, *_) in {**VALID, **INVALID}.items()]
        done = subprocess.run([sys.executable, str(HERE / "deflate_client_script.py"), request.param, *targets],
                              capture_output=True, timeout=80, env=python_env())
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        results = {url.rsplit("/", 1)[1]: result for url, result in json.loads(done.stdout).items()}
        return results, server


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_answer_opens_and_carries_messages(client_run, name):
    results, server = client_run
    result = results[name]
    assert "error" not in result, result
    assert name not in server.errors, server.errors[name]
    assert result["echoes_ok"] and result["close_code"] == 1000, result
    answer = VALID[name][1]
    if answer is None:
        assert result["compression"] is None
    else:
        assert result["compression"]["extension"] == PD


def test_negotiated_windows_are_the_ones_answered(client_run):
    results, _ = client_run
    assert results["client-window-8"]["compression"]["client_max_window_bits"] == 8
    assert results["client-window-10-server-8"]["compression"]["server_max_window_bits"] == 8
    assert results["client-window-10-server-8"]["compression"]["client_max_window_bits"] == 10
    assert results["bare"]["compression"]["client_max_window_bits"] == 12  # our own setting
    assert results["quoted-value"]["compression"]["client_max_window_bits"] == 9
    assert results["no-context-both"]["compression"]["client_no_context_takeover"] is True


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_answer_fails_with_handshake_error_naming_it(client_run, name):
    results, _ = client_run
    result = results[name]
    expected = INVALID[name][2]
    assert "error" in result, f"{name} opened: {result}"
    assert result["error"].startswith("invalid compression answer from the server: " + expected), result["error"]
    assert INVALID[name][1] in result["error"]  # and quotes the header
    assert result["status"] is None


def test_client_offers_are_the_documented_ones(client_run):
    _, server = client_run
    assert server.offers["bare"] == f"{PD}; client_no_context_takeover; client_max_window_bits"
    assert server.offers["strict-same"] == (
        f"{PD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; "
        "client_max_window_bits"
    )
