"""The stress and fault scenarios (registered in order; benchmarks/stress.py runs them).

Each is a small function with one expected outcome, driven by raw RFC 6455
sockets (what libraries refuse to send) or python-websockets clients
(application traffic). All traffic goes to 127.0.0.1; every loop is bounded
in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import statistics
import struct
import threading
import time
from typing import Any

import msgpack

from _stress_core import Context, Outcome, ServerSpec, scenario
from _common import raise_fd_limit
from _stress_server import rss_kib
from _stress_wire import (
    BINARY,
    CLOSE,
    CONTINUATION,
    HOST,
    PING,
    PONG,
    TEXT,
    close_code,
    close_payload,
    deflate_stream,
    encode_frame,
    header_of,
    raw_connect,
    read_head,
    read_frame,
    read_until_close,
    reset,
    status_of,
    upgrade_request,
    zeros,
)

KiB = 1024
MiB = 1024 * 1024
SLOW_CONSUMER_LOG = "too slow a consumer"


def arun(coro, timeout: float):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_url(ctx: Context) -> str:
    return f"ws://{HOST}:{ctx.port}/ws"


def opened(ctx: Context, headers: dict[str, str] | None = None, timeout: float = 10) -> socket.socket:
    """A raw connection with a completed handshake (fails loudly otherwise)."""
    return opened_with_head(ctx, headers, timeout)[0]


def opened_with_head(ctx: Context, headers: dict[str, str] | None = None,
                     timeout: float = 10) -> tuple[socket.socket, bytes]:
    sock, head = raw_connect(ctx.port, headers=headers, timeout=timeout)
    if status_of(head) != 101:
        sock.close()
        raise AssertionError(f"handshake refused: {head[:120]!r}")
    return sock, head


def read_message(sock: socket.socket, timeout: float) -> tuple[int, bytes]:
    """The next data frame (the server sends each message as one frame) or a close
    frame as ``(CLOSE, payload)``; pings and pongs are skipped."""
    sock.settimeout(timeout)
    while True:
        opcode, payload = read_frame(sock)
        if opcode not in (PING, PONG):
            return opcode, payload


def outcome_of(checks: list[tuple[str, str, bool]]) -> Outcome:
    """``(label, observed, ok)`` checks as one row: every observation, failures marked."""
    parts = [f"{label}{seen}" if seen.startswith("→") else f"{label} {seen}" + ("" if ok else " ✗") for label, seen, ok in checks]
    return Outcome(", ".join(parts), all(ok for _, _, ok in checks))


# -- opening handshake ------------------------------------------------------------------------


@scenario(
    "trickling_handshakes",
    input="{n} connections sending one header byte per second, --open-timeout {open_timeout}",
    expected="all dropped by the server {open_timeout}-{deadline} s after connecting",
    small=dict(n=20, open_timeout=3, deadline=4.5), full=dict(n=200, open_timeout=5, deadline=6.5),
    server=lambda p: ServerSpec(("--open-timeout", str(p["open_timeout"]))),
)
def trickling_handshakes(ctx: Context) -> Outcome:
    p = ctx.p
    request = upgrade_request(f"{HOST}:{ctx.port}")
    sel = selectors.DefaultSelector()
    socks, t0, ended, answered = [], {}, {}, set()
    for i in range(p["n"]):
        s = socket.create_connection((HOST, ctx.port), timeout=5)
        s.setblocking(False)
        socks.append(s)
        t0[i] = time.monotonic()
        sel.register(s, selectors.EVENT_READ, i)
    start = time.monotonic()
    limit = start + 2 * p["open_timeout"] + 5
    pos, next_byte = 0, start
    try:
        while len(ended) < len(socks) and time.monotonic() < limit:
            now = time.monotonic()
            if now >= next_byte and pos < len(request):
                for i, s in enumerate(socks):
                    if i not in ended:
                        try:
                            s.send(request[pos:pos + 1])
                        except OSError:
                            ended[i] = now - t0[i]
                            sel.unregister(s)
                pos += 1
                next_byte += 1.0
            for key, _ in sel.select(timeout=max(0.0, min(0.1, next_byte - time.monotonic()))):
                i, s = key.data, key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    answered.add(i)  # an HTTP answer (408, say) before the drop is fine too
                    continue
                ended[i] = time.monotonic() - t0[i]
                sel.unregister(s)
    finally:
        for s in socks:
            s.close()
    n = len(socks)
    if not ended:
        return Outcome(f"0/{n} dropped after {time.monotonic() - start:.1f} s ({pos} bytes trickled)", False)
    times = sorted(ended.values())
    in_window = sum(1 for t in times if p["open_timeout"] - 0.05 <= t <= p["deadline"])
    seen = f"{len(ended)}/{n} dropped after {times[0]:.1f}-{times[-1]:.1f} s"
    if answered:
        seen += f" ({len(answered)} with an HTTP answer)"
    return Outcome(seen, in_window == n)


def flood_headers(ctx: Context, prefix: bytes, chunk: bytes) -> tuple[int | None, float | None, int, str]:
    """Send ``prefix`` then ``chunk`` repeatedly until the server answers or closes
    (bounded by ``max_bytes`` and ``max_seconds``); (status, seconds, bytes sent, how)."""
    p = ctx.p
    s = socket.create_connection((HOST, ctx.port), timeout=5)
    s.sendall(prefix)
    s.setblocking(False)
    start = time.monotonic()
    sent, response, how = len(prefix), b"", "no answer"
    when = None
    try:
        while time.monotonic() - start < p["max_seconds"]:
            want_write = sent < p["max_bytes"]
            readable, writable, _ = _wait_io(s, want_write, 0.05)
            if readable:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    data = None
                except ConnectionResetError:
                    when, how = time.monotonic() - start, "reset"
                    break
                except OSError:
                    data = b""
                if data:
                    response += data
                    if when is None:
                        when = time.monotonic() - start
                    if b"\r\n" in response:
                        how = "answer"
                        break
                elif data == b"":
                    if when is None:
                        when = time.monotonic() - start
                    how = "closed"
                    break
            if writable:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    pass
                except OSError:
                    if when is None:
                        when = time.monotonic() - start
                    how = "reset"
                    break
    finally:
        s.close()
    return status_of(response), when, sent, how


def _wait_io(s: socket.socket, want_write: bool, timeout: float):
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0))
    try:
        events = sel.select(timeout)
    finally:
        sel.close()
    readable = any(mask & selectors.EVENT_READ for _, mask in events)
    writable = any(mask & selectors.EVENT_WRITE for _, mask in events)
    return readable, writable, None


def header_flood_outcome(ctx: Context, status, when, sent, how) -> Outcome:
    growth = ctx.rss_growth_kib()
    ok = status in (400, 431) and when is not None and when <= 1.0 and growth <= ctx.p["rss_kib"]
    if status is not None:
        seen = f"{status} after {when:.2f} s"
    elif how in ("closed", "reset"):
        seen = f"{how} without an answer after {when:.2f} s"
    else:
        seen = f"no answer in {ctx.p['max_seconds']} s"
    return Outcome(f"{seen}, {sent / MiB:.1f} MiB sent, RSS +{growth / 1024:.1f} MiB", ok)


@scenario(
    "endless_header_line",
    input="one header line growing without end (up to {max_mib} MiB in {max_seconds} s)",
    expected="431 or 400 within 1 s, RSS +<{rss_mib} MiB",
    small=dict(max_bytes=32 * MiB, max_mib=32, max_seconds=5, rss_kib=16 * 1024, rss_mib=16),
    full=dict(max_bytes=256 * MiB, max_mib=256, max_seconds=10, rss_kib=16 * 1024, rss_mib=16),
    fresh=True,
)
def endless_header_line(ctx: Context) -> Outcome:
    prefix = f"GET /ws HTTP/1.1\r\nHost: {HOST}:{ctx.port}\r\nX-Filler: ".encode()
    return header_flood_outcome(ctx, *flood_headers(ctx, prefix, b"a" * (64 * KiB)))


@scenario(
    "header_count",
    input="header lines without end, 12 bytes each (up to {max_mib} MiB in {max_seconds} s)",
    expected="431 or 400 within 1 s, RSS +<{rss_mib} MiB",
    small=dict(max_bytes=32 * MiB, max_mib=32, max_seconds=5, rss_kib=16 * 1024, rss_mib=16),
    full=dict(max_bytes=256 * MiB, max_mib=256, max_seconds=10, rss_kib=16 * 1024, rss_mib=16),
    fresh=True,
)
def header_count(ctx: Context) -> Outcome:
    prefix = f"GET /ws HTTP/1.1\r\nHost: {HOST}:{ctx.port}\r\n".encode()
    chunk = b"".join(b"X-H%05d: v\r\n" % (i % 100000) for i in range(5000))  # 5000 headers per send
    return header_flood_outcome(ctx, *flood_headers(ctx, prefix, chunk))


@scenario(
    "bad_version",
    input="Sec-WebSocket-Version: 8",
    expected="426 with Sec-WebSocket-Version: 13",
    small={}, full={},
)
def bad_version(ctx: Context) -> Outcome:
    sock, head = raw_connect(ctx.port, version="8", timeout=5)
    sock.close()
    status, versions = status_of(head), header_of(head, "Sec-WebSocket-Version")
    return Outcome(f"{status or 'no answer'}, Sec-WebSocket-Version: {versions or '-'}",
                   status == 426 and versions is not None and "13" in versions)


@scenario(
    "null_origin",
    input="Origin: null",
    expected="403",
    small={}, full={},
)
def null_origin(ctx: Context) -> Outcome:
    sock, head = raw_connect(ctx.port, headers={"Origin": "null"}, timeout=5)
    sock.close()
    status = status_of(head)
    return Outcome(str(status or "no answer"), status == 403)


@scenario(
    "rebinding_host",
    input="Host: evil.example:PORT, Origin: http://evil.example:PORT",
    expected="refused (4xx)",
    small={}, full={},
)
def rebinding_host(ctx: Context) -> Outcome:
    host = f"evil.example:{ctx.port}"
    sock, head = raw_connect(ctx.port, headers={"Origin": f"http://{host}"}, host_header=host, timeout=5)
    sock.close()
    status = status_of(head)
    return Outcome(str(status or "no answer"), status is not None and 400 <= status < 500)


# -- frames and messages ----------------------------------------------------------------------


def message_size_case(ctx: Context, frames: list[bytes], expect: int | bytes) -> tuple[str, bool]:
    """Send frames on a fresh connection; expect an echo of ``expect`` (bytes) or a close code."""
    sock = opened(ctx)
    try:
        try:
            for fr in frames:
                sock.sendall(fr)
        except OSError:
            pass  # the server may close while a huge frame is still being sent
        if isinstance(expect, bytes):
            try:
                opcode, payload = read_message(sock, 20)
            except (OSError, ConnectionError) as exc:
                return type(exc).__name__, False
            if opcode == CLOSE:
                return f"close {close_code(payload)}", False
            return ("echoed", True) if payload == expect else (f"echo of {len(payload)} B", False)
        ending = read_until_close(sock, 20)
        return str(ending), ending.close_code == expect
    finally:
        sock.close()


@scenario(
    "oversize_messages",
    input="messages of M-1, M, M+1 bytes (M = --max-message-size {m:,}), also in 4 fragments; "
          "frame headers declaring 2^63-1 and 2^64-1 bytes",
    expected="M-1 and M echoed; M+1 and the huge headers closed with 1009 (2^64-1: 1002 or 1009)",
    small=dict(m=64 * KiB), full=dict(m=1 * MiB),
    server=lambda p: ServerSpec(("--max-message-size", str(p["m"]))),
)
def oversize_messages(ctx: Context) -> Outcome:
    m = ctx.p["m"]
    checks = []

    def data(n: int) -> bytes:
        return (b"0123456789abcdef" * (n // 16 + 1))[:n]

    def fragments(n: int) -> list[bytes]:
        payload, q = data(n), n // 4
        parts = [payload[:q], payload[q:2 * q], payload[2 * q:3 * q], payload[3 * q:]]
        return [encode_frame(BINARY if i == 0 else CONTINUATION, part, fin=(i == 3))
                for i, part in enumerate(parts)]

    for label, frames, expect in (
        ("M-1", [encode_frame(BINARY, data(m - 1))], data(m - 1)),
        ("M", [encode_frame(BINARY, data(m))], data(m)),
        ("M+1", [encode_frame(BINARY, data(m + 1))], 1009),
        ("4 frags M", fragments(m), data(m)),
        ("4 frags M+1", fragments(m + 1), 1009),
        ("2^63-1", [encode_frame(BINARY, data(1024), length=2**63 - 1)], 1009),
    ):
        seen, ok = message_size_case(ctx, frames, expect)
        checks.append((label, seen, ok))
    # A 64-bit length with the most significant bit set is itself invalid (RFC 6455 5.2).
    sock = opened(ctx)
    try:
        sock.sendall(encode_frame(BINARY, data(1024), length=2**64 - 1))
        ending = read_until_close(sock, 20)
    finally:
        sock.close()
    checks.append(("2^64-1", str(ending), ending.close_code in (1002, 1009)))
    return outcome_of(checks)


@scenario(
    "decompression_bomb",
    input="permessage-deflate negotiated; one compressed message inflating to {size_label} of zeros, "
          "as one frame and in 64 KiB fragments",
    expected="1009 within 2 s both ways, RSS +<{rss_mib} MiB",
    small=dict(size=100 * 10**6, size_label="100 MB", rss_mib=16),
    full=dict(size=10**9, size_label="1 GB", rss_mib=16),
    fresh=True,
)
def decompression_bomb(ctx: Context) -> Outcome:
    p = ctx.p
    body = deflate_stream(zeros(p["size"]))  # 1 GB of zeros compresses to under 1 MiB
    step = 64 * KiB
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    shapes = {
        "one frame": [encode_frame(BINARY, body, rsv1=True)],
        "fragments": [encode_frame(BINARY if i == 0 else CONTINUATION, part, fin=(i == len(parts) - 1),
                                   rsv1=(i == 0)) for i, part in enumerate(parts)],
    }
    checks = []
    for label, frames in shapes.items():
        sock, head = opened_with_head(ctx, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        try:
            if "permessage-deflate" not in (header_of(head, "Sec-WebSocket-Extensions") or ""):
                return Outcome("permessage-deflate not negotiated", False)  # it would test nothing
            start = time.monotonic()
            try:
                for fr in frames:
                    sock.sendall(fr)
            except OSError:
                pass  # closed by the server while the rest was still being sent
            ending = read_until_close(sock, 20)
            took = time.monotonic() - start
        finally:
            sock.close()
        checks.append((label, f"{ending} after {took:.2f} s", ending.close_code == 1009 and took <= 2.0))
    growth = ctx.rss_growth_kib()
    checks.append(("RSS", f"+{growth / 1024:.1f} MiB", growth <= p["rss_mib"] * 1024))
    outcome = outcome_of(checks)
    outcome.observed += f" ({len(body) / KiB:.0f} KiB compressed)"
    return outcome


@scenario(
    "input_after_inflate_failure",
    input="a compressed message inflating past --max-message-size (1 MiB), then more frames as fast as "
          "the server takes them, for {seconds} s",
    expected="1009; what follows is discarded, RSS +<{rss_mib} MiB",
    small=dict(seconds=3, rss_mib=16), full=dict(seconds=5, rss_mib=16),
    fresh=True,
)
def input_after_inflate_failure(ctx: Context) -> Outcome:
    p = ctx.p
    sock, head = opened_with_head(ctx, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    if "permessage-deflate" not in (header_of(head, "Sec-WebSocket-Extensions") or ""):
        sock.close()
        return Outcome("permessage-deflate not negotiated", False)
    sock.sendall(encode_frame(BINARY, deflate_stream([b"a" * (2 * MiB)]), rsv1=True))
    more = encode_frame(BINARY, b"x" * (64 * KiB)) * 16
    received, sent, how = b"", 0, "sending"
    sock.setblocking(False)
    start = time.monotonic()
    try:
        while time.monotonic() - start < p["seconds"]:
            readable, writable, _ = _wait_io(sock, True, 0.05)
            if readable:
                try:
                    received += sock.recv(65536) or b""
                except BlockingIOError:
                    pass
                except OSError:
                    how = "reset by the server"
                    break
            if writable:
                try:
                    sent += sock.send(more)
                except BlockingIOError:
                    pass
                except OSError:
                    how = "reset by the server"
                    break
    finally:
        reset(sock)
    code = close_code(received[2:4]) if len(received) >= 4 and received[0] & 0x0F == CLOSE else None
    growth = ctx.rss_growth_kib()
    seen = (f"{code or 'no close frame'}, then {sent / MiB:.0f} MiB sent in {time.monotonic() - start:.1f} s "
            f"({how}), RSS +{growth / 1024:.1f} MiB")
    return Outcome(seen, code == 1009 and growth <= p["rss_mib"] * 1024)


@scenario(
    "invalid_utf8",
    input="text messages with invalid UTF-8: whole, at the end, in the 2nd fragment, in a first "
          "fragment never finished; a valid character split across fragments",
    expected="1007 for each invalid one (the unfinished one without waiting); the split one echoed",
    small={}, full={},
)
def invalid_utf8(ctx: Context) -> Outcome:
    checks = []
    cases = (
        ("0xff", [encode_frame(TEXT, b"\xff")], 1007),
        ("truncated", [encode_frame(TEXT, b"abc\xe2\x82")], 1007),
        ("2nd fragment", [encode_frame(TEXT, b"hello ", fin=False),
                          encode_frame(CONTINUATION, b"\xed\xa0\x80")], 1007),
        ("unfinished", [encode_frame(TEXT, b"ab\xff", fin=False)], 1007),
        ("split char", [encode_frame(TEXT, b"price \xe2\x82", fin=False),
                        encode_frame(CONTINUATION, b"\xac")], "price €".encode()),
    )
    for label, frames, expect in cases:
        seen, ok = message_size_case(ctx, frames, expect)
        checks.append((label, seen, ok))
    return outcome_of(checks)


@scenario(
    "invalid_close_frames",
    input="close frames with codes 1005/1006/1015/999/5000/1004/2999, 1- and 126-byte payloads, "
          "an invalid UTF-8 reason; valid 1000/1001/3000/4999",
    expected="a 1002 close frame back (1007 or 1002 for the bad reason); valid codes echoed",
    small={}, full={},
)
def invalid_close_frames(ctx: Context) -> Outcome:
    checks = []
    cases: list[tuple[str, bytes, tuple[int, ...]]] = [
        (str(code), close_payload(code), (1002,)) for code in (1005, 1006, 1015, 999, 5000, 1004, 2999)
    ]
    cases += [
        ("1 byte", b"\x03", (1002,)),
        ("126 bytes", close_payload(1000, b"x" * 124), (1002,)),
        ("bad reason", close_payload(1000, b"\xff\xfe"), (1007, 1002)),
    ]
    cases += [(str(code), close_payload(code, b"bye"), (code,)) for code in (1000, 1001, 3000, 4999)]
    for label, payload, expect in cases:
        sock = opened(ctx)
        try:
            sock.sendall(encode_frame(CLOSE, payload))
            ending = read_until_close(sock, 10)
        finally:
            sock.close()
        checks.append((label, f"→{ending}", ending.close_code in expect))
    return outcome_of(checks)


# -- applications -----------------------------------------------------------------------------


@scenario(
    "lone_surrogate",
    input='chat v2: say "\\ud800" (JSON escape, and as UTF-8 bytes in msgpack), join with nick '
          '"\\udc00x"; then new v2 joiners of the room',
    expected="error replies (bad-payload), the sender stays connected, later joiners get the "
             "history (no 1011)",
    small={}, full={},
)
def lone_surrogate(ctx: Context) -> Outcome:
    from websockets.asyncio.client import connect

    url = ws_url(ctx)

    async def main() -> Outcome:
        checks = []
        async with connect(url, subprotocols=["wskit.chat.v2.json"], compression=None) as a, \
                connect(url, subprotocols=["wskit.chat.v2.msgpack"], compression=None) as m:
            await a.send(json.dumps({"type": "join", "room": "r", "nick": "alice"}))
            assert json.loads(await a.recv())["type"] == "joined"
            await m.send(msgpack.packb({"type": "join", "room": "r", "nick": "mo"}))
            assert msgpack.unpackb(await m.recv())["type"] == "joined"
            await a.recv()  # presence of mo
            await a.send('{"type":"say","room":"r","text":"\\ud800"}')
            reply = json.loads(await a.recv())
            checks.append(("say", reply.get("code", reply.get("type")), reply.get("code") == "bad-payload"))
            await a.send('{"type":"join","room":"r2","nick":"\\udc00x"}')
            reply = json.loads(await a.recv())
            checks.append(("nick", reply.get("code", reply.get("type")), reply.get("code") == "bad-payload"))
            raw = msgpack.packb({"type": "say", "room": "r", "text": "\x00\x00\x00"})
            await m.send(raw.replace(b"\xa3\x00\x00\x00", b"\xa3\xed\xa0\x80"))
            reply = msgpack.unpackb(await m.recv())
            checks.append(("msgpack say", reply.get("code", reply.get("type")),
                           reply.get("code") == "bad-payload"))
            await a.send(json.dumps({"type": "say", "room": "r", "text": "still here"}))
            got = json.loads(await asyncio.wait_for(a.recv(), 5))
            checks.append(("sender", "open" if got.get("text") == "still here" else str(got),
                           got.get("text") == "still here"))
            for sub, encode, decode in (("wskit.chat.v2.json", json.dumps, json.loads),
                                        ("wskit.chat.v2.msgpack", msgpack.packb, msgpack.unpackb)):
                async with connect(url, subprotocols=[sub], compression=None) as late:
                    await late.send(encode({"type": "join", "room": "r", "nick": "late" + sub[-4:]}))
                    reply = decode(await asyncio.wait_for(late.recv(), 5))
                    texts = [h.get("text") for h in reply.get("history", [])]
                    ok = reply.get("type") == "joined" and texts == ["still here"]
                    checks.append((f"joiner {sub.rsplit('.', 1)[1]}", f"{reply.get('type')} history={texts}", ok))
        return outcome_of(checks)

    return arun(main(), 30)


@scenario(
    "many_rooms",
    input="{rooms:,} chat rooms held by {conns} connections (100 rooms each, the per-connection "
          "cap); a probe joins {probes} more, one at a time",
    expected="every join answered joined; {speed}",
    small=dict(rooms=2000, conns=20, probes=100, speed="probe join round trip reported"),
    full=dict(rooms=50_000, conns=500, probes=300, speed="probe join round trip under 1 ms on average"),
    timeout=lambda p: 60 + p["rooms"] / 200,
    fresh=True,
)
def many_rooms(ctx: Context) -> Outcome:
    from websockets.asyncio.client import connect

    p = ctx.p
    url = ws_url(ctx)

    async def probe(tag: str) -> list[float]:
        times = []
        async with connect(url, subprotocols=["wskit.chat.v2.json"], compression=None) as ws:
            warmup = 20  # not timed: the first joins of a connection pay for caches filling
            for i in range(warmup + p["probes"]):
                room = f"probe-{tag}-{i}"
                start = time.perf_counter()
                await ws.send(json.dumps({"type": "join", "room": room, "nick": "probe"}))
                reply = json.loads(await ws.recv())
                if i >= warmup:
                    times.append(time.perf_counter() - start)
                if reply.get("type") != "joined":
                    raise AssertionError(f"probe join answered {reply}")
                await ws.send(json.dumps({"type": "leave", "room": room}))
                await ws.recv()
        return times

    async def main() -> Outcome:
        empty = await probe("empty")
        gate = asyncio.Semaphore(25)
        per = p["rooms"] // p["conns"]
        holders = []  # the connections holding the rooms stay open while the probe runs
        try:
            async def hold(c: int):
                async with gate:
                    ws = await connect(url, subprotocols=["wskit.chat.v2.json"], compression=None)
                    holders.append(ws)
                    for i in range(per):
                        await ws.send(json.dumps({"type": "join", "room": f"room-{c}-{i}", "nick": f"n{c}"}))
                    joined, errors = 0, []
                    while joined + len(errors) < per:
                        msg = json.loads(await ws.recv())
                        if msg.get("type") == "joined":
                            joined += 1
                        elif msg.get("type") == "error":
                            errors.append(msg.get("code"))
                    return joined, errors

            results = await asyncio.gather(*(hold(c) for c in range(p["conns"])))
            joined = sum(r[0] for r in results)
            errors = [e for r in results for e in r[1]]
            full = await probe("full")
        finally:
            await asyncio.gather(*(ws.close() for ws in holders), return_exceptions=True)
        mean_empty, mean_full = statistics.mean(empty) * 1000, statistics.mean(full) * 1000
        seen = (f"{joined}/{p['rooms']} joined, join {mean_empty:.2f} ms empty → {mean_full:.2f} ms "
                f"at {joined} rooms (mean; median {statistics.median(full) * 1000:.2f} ms)")
        if errors:
            seen += f", errors {sorted(set(errors))}"
        ok = joined == p["rooms"] and not errors
        if ctx.size == "full":
            ok = ok and mean_full < 1.0
        return Outcome(seen, ok)

    return arun(main(), ctx.p["rooms"] / 200 + 50)


@scenario(
    "stalled_reader_rpc",
    input="a client that never reads asks for {requests:,} RPC echoes of 64 KiB, "
          "--max-buffered-bytes {cap_mib} MiB",
    expected="dropped (slow-consumer log line), RSS +<50 MiB",
    small=dict(requests=400, cap=1 * MiB, cap_mib=1), full=dict(requests=1500, cap=4 * MiB, cap_mib=4),
    server=lambda p: ServerSpec(("--max-buffered-bytes", str(p["cap"]), "--no-compress",
                                 "--max-message-size", str(256 * KiB))),
)
def stalled_reader_rpc(ctx: Context) -> Outcome:
    p = ctx.p
    sock = socket.create_connection((HOST, ctx.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(upgrade_request(f"{HOST}:{ctx.port}", headers={"Sec-WebSocket-Protocol": "wskit.rpc.v1.json"}))
    head = read_head(sock)
    if status_of(head) != 101:
        return Outcome(f"handshake refused: {head[:60]!r}", False)
    request = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["x" * (64 * KiB)], "id": 1}).encode()
    frame = encode_frame(TEXT, request)
    sent = 0
    sock.settimeout(5)
    try:
        for _ in range(p["requests"]):
            sock.sendall(frame)
            sent += 1
    except OSError:
        pass  # dropped while still asking
    dropped = ctx.wait_for_count(SLOW_CONSUMER_LOG, 1, 30)
    growth = ctx.rss_growth_kib()
    reset(sock)
    ok = dropped >= 1 and growth < 50 * 1024
    return Outcome(f"{'dropped' if dropped else 'not dropped'} after {sent} requests "
                   f"({sent * 64 / 1024:.1f} MiB asked), RSS +{growth / 1024:.1f} MiB", ok)


@scenario(
    "slow_subscriber",
    input="pubsub: {fast} subscribers that read and one that never reads; {events:,} events of "
          "{kib} KiB, --max-buffered-bytes 1 MiB",
    expected="the one that never reads is dropped; every other subscriber gets all {events:,} in order",
    small=dict(fast=5, events=2000, kib=4), full=dict(fast=20, events=6000, kib=4),
    server=lambda p: ServerSpec(("--max-buffered-bytes", str(1 * MiB), "--no-compress")),
    timeout=lambda p: 60 + p["events"] * p["fast"] / 500,
)
def slow_subscriber(ctx: Context) -> Outcome:
    from websockets.asyncio.client import connect

    p = ctx.p
    url = ws_url(ctx)
    window = 100  # events a reading subscriber may lag behind: far under the cap

    # The one that never reads: a raw socket with a tiny receive buffer.
    slow = socket.create_connection((HOST, ctx.port), timeout=10)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(upgrade_request(f"{HOST}:{ctx.port}", headers={"Sec-WebSocket-Protocol": "wskit.pubsub.v1.json"}))
    if status_of(read_head(slow)) != 101:
        slow.close()
        return Outcome("the never-reading subscriber was refused", False)
    slow.sendall(encode_frame(TEXT, json.dumps({"type": "subscribe", "topic": "load"}).encode()))
    slow_port = slow.getsockname()[1]

    async def main() -> Outcome:
        counts = [0] * p["fast"]
        order_ok = [True] * p["fast"]
        closed: list[str] = []
        subs = []
        for _ in range(p["fast"]):
            ws = await connect(url, subprotocols=["wskit.pubsub.v1.json"], compression=None, max_size=None)
            await ws.send(json.dumps({"type": "subscribe", "topic": "load"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            subs.append(ws)
        progress = asyncio.Event()

        async def read(i: int, ws) -> None:
            try:
                while counts[i] < p["events"]:
                    msg = json.loads(await ws.recv())
                    if msg.get("type") != "event":
                        continue
                    if msg["data"]["seq"] != counts[i]:
                        order_ok[i] = False
                    counts[i] += 1
                    progress.set()
            except Exception as exc:  # a closed connection is the failure this reports
                closed.append(type(exc).__name__)

        readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(subs)]
        filler = "x" * (p["kib"] * KiB - 60)
        async with connect(url, subprotocols=["wskit.pubsub.v1.json"], compression=None) as pub:
            for seq in range(p["events"]):
                while seq - min(counts) > window and not closed:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), 10)
                await pub.send(json.dumps({"type": "publish", "topic": "load",
                                           "data": {"seq": seq, "fill": filler}}))
            await asyncio.wait_for(asyncio.gather(*readers), 30)
        for ws in subs:
            await ws.close()
        dropped = ctx.wait_for_count(SLOW_CONSUMER_LOG, 1, 10)
        drop_lines = [line for line in ctx.logs() if SLOW_CONSUMER_LOG in line]
        slow_dropped = any(f":{slow_port}" in line for line in drop_lines)
        complete = sum(1 for i in range(p["fast"]) if counts[i] == p["events"] and order_ok[i])
        seen = (f"never-reading one {'dropped' if slow_dropped else 'not dropped'}, "
                f"{complete}/{p['fast']} readers got all {p['events']} in order")
        if dropped > 1 or (dropped and not slow_dropped):
            seen += f", {dropped} dropped in all"
        return Outcome(seen, slow_dropped and dropped == 1 and complete == p["fast"])

    try:
        return arun(main(), ctx.p["events"] * ctx.p["fast"] / 500 + 50)
    finally:
        reset(slow)


@scenario(
    "ping_burst",
    input="{n:,} pings sent back to back (8-byte payloads) on one connection",
    expected="every ping answered with its pong, or a clean close frame",
    small=dict(n=10_000), full=dict(n=100_000),
    fresh=True,
)
def ping_burst(ctx: Context) -> Outcome:
    n = ctx.p["n"]
    sock = opened(ctx)
    pongs, ending = [0], [None]
    mismatch = [0]

    def reader() -> None:
        sock.settimeout(30)
        expected_seq = 0
        try:
            while pongs[0] < n:
                opcode, payload = read_frame(sock)
                if opcode == PONG:
                    if payload != struct.pack("!Q", expected_seq):
                        mismatch[0] += 1
                    expected_seq += 1
                    pongs[0] += 1
                elif opcode == CLOSE:
                    ending[0] = f"close {close_code(payload)}"
                    return
        except (OSError, ConnectionError) as exc:
            ending[0] = type(exc).__name__

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    start = time.monotonic()
    batch = 1000
    try:
        for first in range(0, n, batch):
            sock.sendall(b"".join(encode_frame(PING, struct.pack("!Q", i))
                                  for i in range(first, min(n, first + batch))))
    except OSError as exc:
        ending[0] = ending[0] or f"send: {type(exc).__name__}"
    thread.join(60)
    took = time.monotonic() - start
    sock.close()
    if pongs[0] == n:
        seen = f"{n}/{n} pongs in {took:.1f} s"
        ok = mismatch[0] == 0
        if mismatch[0]:
            seen += f", {mismatch[0]} out of order"
    else:
        seen = f"{pongs[0]}/{n} pongs, then {ending[0] or 'nothing'}"
        ok = (ending[0] or "").startswith("close ")
    return Outcome(seen, ok)


# -- connection lifecycle ---------------------------------------------------------------------


def open_many(ctx: Context, n: int, parallel: int = 64, timeout: float = 120,
              headers: dict[str, str] | None = None) -> tuple[list[socket.socket], int]:
    """``n`` raw connections with completed handshakes, at most ``parallel`` handshakes in
    flight (under the listen backlog); returns (open sockets, refused count)."""
    request = upgrade_request(f"{HOST}:{ctx.port}", headers=headers)
    sel = selectors.DefaultSelector()
    done: list[socket.socket] = []
    refused = 0
    pending: dict[socket.socket, bytes] = {}
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(done) + refused < n and time.monotonic() < deadline:
            while started < n and len(pending) < parallel:
                s = socket.create_connection((HOST, ctx.port), timeout=10)
                s.sendall(request)
                s.setblocking(False)
                pending[s] = b""
                sel.register(s, selectors.EVENT_READ)
                started += 1
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                try:
                    data = s.recv(1024)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                head = pending[s] + data
                if data and not head.endswith(b"\r\n\r\n"):
                    pending[s] = head
                    continue
                sel.unregister(s)
                del pending[s]
                if status_of(head) == 101:
                    done.append(s)
                else:
                    refused += 1
                    s.close()
    finally:
        for s in pending:
            s.close()
        sel.close()
    return done, refused


@scenario(
    "sigterm_with_peers",
    input="SIGTERM while {n} open peers stay silent (they read but never answer), --close-timeout 2",
    expected="every peer gets a 1001 close frame; {n} 'wskit: close' lines logged; exit status 0",
    small=dict(n=200), full=dict(n=200),
    server=lambda p: ServerSpec(("--close-timeout", "2")),
    stops_server=True,
)
def sigterm_with_peers(ctx: Context) -> Outcome:
    n = ctx.p["n"]
    socks, refused = open_many(ctx, n)
    try:
        if ctx.wait_for_count("wskit: open", len(socks), 10) < len(socks) or refused:
            return Outcome(f"only {len(socks)}/{n} opened", False)
        mark = len(ctx.server.lines)
        ctx.server.terminate()
        codes: dict[int, int | None] = {}
        sel = selectors.DefaultSelector()
        buffers = {}
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
            buffers[i] = b""
        deadline = time.monotonic() + 15
        while len(codes) < len(socks) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                i, s = key.data, key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    codes.setdefault(i, None)
                    sel.unregister(s)
                    continue
                buffers[i] += data
                buf = buffers[i]
                if len(buf) >= 2 and buf[0] & 0x0F == CLOSE and len(buf) >= 2 + (buf[1] & 0x7F):
                    codes[i] = close_code(buf[2:2 + (buf[1] & 0x7F)])
                    sel.unregister(s)  # silent: the close is never answered
        exit_code = ctx.server.wait(15)
        logged = ctx.server.count("wskit: close", mark)
        got_1001 = sum(1 for c in codes.values() if c == 1001)
        seen = f"{got_1001}/{n} got 1001, {logged}/{n} close lines, exit {exit_code}"
        others = sorted({str(c) for c in codes.values() if c != 1001})
        if others:
            seen += f" (also: {', '.join(others)})"
        return Outcome(seen, got_1001 == n and logged == n and exit_code == 0)
    finally:
        for s in socks:
            s.close()


@scenario(
    "hold_connections",
    input="{n:,} connections opened (no compression offered), held, then closed with 1000",
    expected="all {n:,} opened and all closed on the server; KiB per connection reported",
    small=dict(n=500), full=dict(n=10_000),
    server=lambda p: ServerSpec(nofile=p["n"] + 1000),
    timeout=lambda p: 60 + p["n"] / 50,
)
def hold_connections(ctx: Context) -> Outcome:
    n = ctx.p["n"]
    raise_fd_limit(n + 1000)
    before = rss_kib(ctx.server.pid) or 0
    socks, refused = open_many(ctx, n, timeout=30 + n / 50)
    try:
        opened_n = ctx.wait_for_count("wskit: open", len(socks), 30)
        time.sleep(1.0)
        held = rss_kib(ctx.server.pid) or 0
        per_conn = (held - before) / max(1, len(socks))
        mark = len(ctx.server.lines)
        close = encode_frame(CLOSE, close_payload(1000))
        for s in socks:
            try:
                s.setblocking(True)
                s.sendall(close)
            except OSError:
                pass
        closed_n = ctx.server.wait_for_count("wskit: close", len(socks), 30 + n / 200, mark)
    finally:
        for s in socks:
            s.close()
    seen = (f"{opened_n}/{n} opened, {closed_n}/{n} closed, {per_conn:.1f} KiB per connection "
            f"(+{(held - before) / 1024:.0f} MiB)")
    if refused:
        seen += f", {refused} refused"
    return Outcome(seen, opened_n == n and closed_n == n and not refused)


@scenario(
    "vanishing_peers",
    input="{n:,} open connections reset (SO_LINGER 0), half of them in the middle of a frame",
    expected="all {n:,} closed on the server within {bound} s",
    small=dict(n=100, bound=5), full=dict(n=1000, bound=10),
    server=lambda p: ServerSpec(nofile=p["n"] + 1000),
)
def vanishing_peers(ctx: Context) -> Outcome:
    n = ctx.p["n"]
    raise_fd_limit(n + 1000)
    socks, refused = open_many(ctx, n)
    if ctx.wait_for_count("wskit: open", len(socks), 20) < n:
        for s in socks:
            s.close()
        return Outcome(f"only {len(socks)}/{n} opened", False)
    mark = len(ctx.server.lines)
    for i, s in enumerate(socks):
        if i % 2:
            try:
                s.setblocking(True)
                s.sendall(encode_frame(TEXT, b"x" * 1000)[:300])  # a frame cut short
            except OSError:
                pass
    start = time.monotonic()
    for s in socks:
        reset(s)
    closed_n = ctx.server.wait_for_count("wskit: close", n, ctx.p["bound"], mark)
    took = time.monotonic() - start
    return Outcome(f"{closed_n}/{n} closed on the server in {took:.1f} s", closed_n == n)


# -- soak -------------------------------------------------------------------------------------


def slope_kib_per_min(series: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in KiB per minute."""
    if len(series) < 3:
        return 0.0
    xs = [t for t, _ in series]
    ys = [v for _, v in series]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


@scenario(
    "soak",
    input="chat for {label}: {clients} clients (v1/v2, json/msgpack, {deflate} with deflate) in {rooms} "
          "rooms, one message each per {interval} s, each reconnecting every {session} s",
    expected="no error replies or unexpected closes; RSS flat over the last half ({flat})",
    # 10 s of a small run is too short for a slope (the allocator is still settling): it
    # only catches a gross leak. The full run's 5 minutes give the slope meaning.
    # deflate: which clients offer permessage-deflate ("half", "none" or "all").
    small=dict(seconds=20, label="20 s", clients=12, rooms=3, interval=0.1, session=5, deflate="half",
               growth_limit_mib=4, slope_limit=None, flat="grows < 4 MiB"),
    full=dict(seconds=600, label="10 min", clients=48, rooms=6, interval=0.2, session=30, deflate="half",
              growth_limit_mib=4, slope_limit=256, flat="slope < 256 KiB/min, grows < 4 MiB"),
    timeout=lambda p: p["seconds"] + 90,
    fresh=True,
)
def soak(ctx: Context) -> Outcome:
    from websockets.asyncio.client import connect

    p = ctx.p
    url = ws_url(ctx)
    kinds = [("wskit.chat.v2.json", json.dumps, json.loads),
             ("wskit.chat.v2.msgpack", msgpack.packb, msgpack.unpackb),
             ("wskit.chat.v1.json", json.dumps, json.loads)]
    stats: dict[str, Any] = {"sent": 0, "received": 0, "errors": [], "sessions": 0, "closed": []}
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
             "incididunt ut labore et dolore magna aliqua").split()

    async def session(i: int, generation: int, until: float) -> None:
        sub, encode, decode = kinds[i % len(kinds)]
        room = f"soak-{i % p['rooms']}"
        deflate = {"half": i % 2 == 1, "none": False, "all": True}[p["deflate"]]
        async with connect(url, subprotocols=[sub], compression="deflate" if deflate else None) as ws:
            await ws.send(encode({"type": "join", "room": room, "nick": f"c{i}-{generation}"}))

            async def drain() -> None:
                async for raw in ws:
                    msg = decode(raw)
                    if msg.get("type") == "error":
                        stats["errors"].append(msg.get("code"))
                    elif msg.get("type") == "message":
                        stats["received"] += 1

            reader = asyncio.create_task(drain())
            n = 0
            while time.monotonic() < until and not reader.done():
                n += 1
                text = " ".join(words[(n + k) % len(words)] for k in range(8 + n % 24))
                await ws.send(encode({"type": "say", "room": room, "text": text}))
                stats["sent"] += 1
                await asyncio.sleep(p["interval"])
            if reader.done() and reader.exception():
                raise reader.exception()
            reader.cancel()
        stats["sessions"] += 1

    async def client(i: int, stop: float) -> None:
        # Staggered: client i's first session is shorter, so reconnects spread over time.
        until = time.monotonic() + p["session"] * (i + 1) / p["clients"]
        generation = 0
        while time.monotonic() < stop:
            generation += 1
            try:
                await session(i, generation, min(until, stop))
            except Exception as exc:  # an unexpected close is what this counts
                stats["closed"].append(f"{type(exc).__name__}: {exc}"[:80])
                await asyncio.sleep(0.5)
            until = time.monotonic() + p["session"]

    async def main() -> None:
        stop = time.monotonic() + p["seconds"]
        await asyncio.gather(*(client(i, stop) for i in range(p["clients"])))

    start = time.monotonic()
    arun(main(), p["seconds"] + 60)
    end = time.monotonic()
    half = start + (end - start) / 2
    series = ctx.rss.series(half, end)
    slope = slope_kib_per_min(series)
    first, last = (series[0][1], series[-1][1]) if series else (0, 0)
    seen = (f"{stats['sent']} sent, {stats['received']} delivered, {stats['sessions']} sessions; "
            f"RSS {first / 1024:.1f} → {last / 1024:.1f} MiB over the last half, "
            f"slope {slope:+.0f} KiB/min")
    if stats["errors"]:
        seen += f", error replies {sorted(set(stats['errors']))}"
    if stats["closed"]:
        seen += f", {len(stats['closed'])} unexpected closes ({stats['closed'][0]})"
    flat = (last - first) < p["growth_limit_mib"] * 1024 and (p["slope_limit"] is None or slope < p["slope_limit"])
    ok = not stats["errors"] and not stats["closed"] and flat and stats["received"] > 0
    return Outcome(seen, ok)
