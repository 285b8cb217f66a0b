"""Fuzz target: arbitrary bytes into a wskit server connection after a valid handshake, in memory.

    python tests/memory/fuzz_target.py --backend twisted|asyncio [--examples N]

The server protocol of one backend runs on that backend's in-memory tier
(tests/memory/<backend>/conftest.py: a fake transport on a fake clock), with
the shipped subprotocols, permessage-deflate offered or not, and a 4 KiB
message limit. After the opening handshake hypothesis feeds it a stream of
frames (valid, malformed, compressed, control frames with any close code,
headers that lie about their length, application messages, raw bytes), cut
into reads at arbitrary points, then lets the clock run past the closing
handshake timeout. For every input:

* no exception escapes the protocol and nothing is logged at error level
  (no traceback, no handler failure, no unhandled Deferred or task error);
* the server never sends 1011, and every close frame it sends carries a code
  RFC 6455 lets an endpoint send (or echoes the peer's);
* a connection the server ends has a close frame first; none is sent twice,
  and no data frame follows it;
* bytes held for an unfinished frame or message stay within the message
  limit (plus one read), or, once the connection has been failed, within the
  limit past which the peer is dropped.

One process runs one backend (importing wskit.twisted or wskit.asyncio selects
txaio's framework): tests/test_fuzz_protocol.py starts this script once per
backend. Budgets: tests/fuzz_support.py (WSKIT_FUZZ_EXAMPLES, WSKIT_FUZZ_RANDOM).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import struct
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import msgpack  # noqa: E402
from fuzz_support import fuzz_settings  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from memory import frames as f  # noqa: E402
from memory.driver import memory_settings  # noqa: E402
from wskit.protocol import MAX_BYTES_AFTER_FAILURE  # noqa: E402

MAX_MESSAGE = 4096
# Codes an endpoint may put in a close frame (RFC 6455 7.4.1, IANA registry), 1011 aside:
# a 1011 from the server means a handler or wskit itself failed.
SENDABLE = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1012, 1013, 1014} | set(range(3000, 5000))
SUBPROTOCOLS = [None, "wskit.echo", "wskit.chat.v2.json", "wskit.chat.v1.msgpack", "wskit.pubsub.v1.json",
                "wskit.pubsub.v1.msgpack", "wskit.rpc.v1.json", "wskit.rpc.v1.msgpack"]
OFFERS = [None, "permessage-deflate", "permessage-deflate; client_max_window_bits",
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
          "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10"]

APP_MESSAGES = {
    "chat": [{"type": "join", "room": "r", "nick": "ann"}, {"type": "say", "room": "r", "text": "hi"},
             {"type": "leave", "room": "r"}, {"type": "join", "room": "r", "nick": "\x07"}, {"type": "x"}],
    "pubsub": [{"type": "subscribe", "topic": "t.*"}, {"type": "publish", "topic": "t.a", "data": [1, "x"]},
               {"type": "unsubscribe", "topic": "t.*"}, {"type": "publish", "topic": "t.*", "data": 1}],
    "rpc": [{"jsonrpc": "2.0", "method": "echo", "params": ["x"], "id": 1},
            {"jsonrpc": "2.0", "method": "add", "params": [1, 2.5], "id": "a"},
            [{"jsonrpc": "2.0", "method": "time", "id": 2}, {"jsonrpc": "2.0", "method": "nope"}],
            {"jsonrpc": "2.0", "method": "rpc.discover", "id": None}, {"id": 3}],
    "echo": ["hello", "x" * 200],
}


def app_payloads(subprotocol: str | None):
    """Well-formed messages of the negotiated subprotocol, as a client would encode them."""
    app = (subprotocol or "wskit.echo").split(".")[1]
    if subprotocol and subprotocol.endswith("msgpack"):
        encoded = [msgpack.packb(msg, use_bin_type=True) for msg in APP_MESSAGES[app]]
    else:
        encoded = [(msg if isinstance(msg, str) else json.dumps(msg)).encode() for msg in APP_MESSAGES[app]]
    return st.sampled_from(encoded)


@st.composite
def messages(draw, subprotocol: str | None, deflate: bool):
    """A well-formed message, sometimes fragmented, compressed when deflate was offered."""
    binary = bool(subprotocol and subprotocol.endswith("msgpack"))
    if draw(st.integers(0, 19)) == 0:
        binary = not binary  # the other frame type: 1003 on the serialized subprotocols
    payload = draw(st.one_of(app_payloads(subprotocol), app_payloads(subprotocol), app_payloads(subprotocol),
                             st.text(max_size=60).map(str.encode),
                             st.integers(MAX_MESSAGE - 2, MAX_MESSAGE + 2).map(lambda n: b"a" * n)))
    compressed = deflate and draw(st.booleans())
    if compressed:
        payload = f.deflate_message(payload, 9)  # 9 bits: valid whatever window was agreed
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=2)))
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
    out = b""
    for i, part in enumerate(parts):
        opcode = (f.BINARY if binary else f.TEXT) if i == 0 else f.CONTINUATION
        out += f.frame(opcode, part, fin=i == len(parts) - 1, rsv=4 if compressed and i == 0 else 0)
    return out


@st.composite
def pieces(draw, subprotocol: str | None, deflate: bool):
    """One piece of the client's stream."""
    kind = draw(st.sampled_from(["message"] * 8 + ["frame"] * 2 + ["control"] * 2 + ["close", "lying", "raw"]))
    mask = None if draw(st.integers(0, 19)) == 0 else f.SAMPLE_MASK
    if kind == "message":
        return draw(messages(subprotocol, deflate)), "message"
    if kind == "frame":  # any header bits, any payload
        payload = draw(st.one_of(app_payloads(subprotocol), st.binary(max_size=300),
                                 st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass"))))
        opcode = draw(st.sampled_from([f.TEXT, f.BINARY, f.CONTINUATION] * 2 + list(range(16))))
        rsv = draw(st.sampled_from([0, 0, 4, 4] + list(range(8))))
        if rsv == 4 and draw(st.booleans()):
            payload = f.deflate_message(payload, draw(st.sampled_from([9, 12, 15])))
        return f.frame(opcode, payload, fin=draw(st.booleans()), rsv=rsv, mask=mask), "frame"
    if kind == "control":
        opcode = draw(st.sampled_from([f.PING, f.PING, f.PONG, 0xB, 0xF]))
        payload = draw(st.one_of(st.binary(max_size=125), st.binary(max_size=125),
                                 st.binary(min_size=126, max_size=200)))
        return f.frame(opcode, payload, fin=draw(st.integers(0, 5)) > 0, mask=mask), "control"
    if kind == "close":
        code = draw(st.one_of(st.sampled_from([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1011, 1015, 999,
                                               1004, 1016, 2999, 3000, 4999, 5000]),
                              st.integers(0, 65535)))
        reason = draw(st.one_of(st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
                                st.binary(max_size=20), st.binary(min_size=124, max_size=130)))
        body = draw(st.one_of(st.just(struct.pack("!H", code) + reason), st.binary(max_size=1)))
        return f.frame(f.CLOSE, body, mask=mask), f"close:{code if len(body) >= 2 else None}"
    if kind == "lying":
        length = draw(st.sampled_from([126, 65535, 65536, MAX_MESSAGE + 1, 2**32, 2**63 - 1, 2**64 - 1]))
        b0 = 0x80 | draw(st.sampled_from([f.TEXT, f.BINARY]))
        if length < 65536:
            header = struct.pack("!BBH", b0, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", b0, 0x80 | 127, length)
        return header + f.SAMPLE_MASK + draw(st.binary(max_size=64)), "lying"
    return draw(st.binary(min_size=1, max_size=64)), "raw"


@st.composite
def sessions(draw):
    subprotocol = draw(st.sampled_from(SUBPROTOCOLS))
    offer = draw(st.sampled_from(OFFERS))
    budget = draw(st.sampled_from([0, 2]))
    parts = draw(st.lists(pieces(subprotocol, offer is not None), min_size=1, max_size=8))
    stream = b"".join(p for p, _ in parts)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=4))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)]) if b > a]
    sent_codes = {int(label.split(":")[1]) for _, label in parts
                  if label.startswith("close:") and label != "close:None"}
    return subprotocol, offer, budget, chunks, sent_codes


# How the inputs ended (printed with --statistics: shows what the budget reached).
OUTCOMES: collections.Counter = collections.Counter()


def receive_buffered(proto) -> int:
    """Bytes the protocol holds for an unfinished frame or message."""
    total = len(getattr(proto, "data", b"") or b"")
    for name in ("frame_data", "message_data", "control_frame_data"):
        total += sum(len(x) for x in (getattr(proto, name, None) or ()))
    return total


class ErrorLog:
    """Errors logged anywhere in the process (not only wskit's loggers), per example."""

    def __init__(self, backend: str):
        self.backend = backend
        self.lines: list[str] = []
        if backend == "twisted":
            from twisted.logger import LogLevel, formatEvent, globalLogPublisher

            def observe(event: dict) -> None:
                level = event.get("log_level")
                if level in (LogLevel.error, LogLevel.critical) or event.get("log_failure") is not None:
                    self.lines.append(formatEvent(event) or repr(event.get("log_failure")))

            self._observer = observe
            globalLogPublisher.addObserver(observe)
        else:
            class Capture(logging.Handler):
                def emit(inner, record: logging.LogRecord) -> None:  # noqa: N805
                    self.lines.append(record.getMessage())

            self._handler = Capture(logging.ERROR)
            logging.getLogger().addHandler(self._handler)

    def watch_loop(self, loop) -> None:
        loop.set_exception_handler(lambda _loop, context: self.lines.append(
            f"{context.get('message')}: {context.get('exception')!r}"))


def make_tier(backend: str):
    if backend == "twisted":
        from memory.twisted.conftest import TwistedTier

        return TwistedTier()
    from memory.asyncio.conftest import AsyncioTier

    return AsyncioTier()


def check_session(backend: str, errors: ErrorLog, session) -> None:
    subprotocol, offer, budget, chunks, sent_codes = session
    from wskit.settings import AppSettings, CompressionSettings, LimitSettings

    settings = memory_settings(compression=CompressionSettings(threshold=0),
                               limits=LimitSettings(max_message_size=MAX_MESSAGE),
                               apps=AppSettings(error_budget=budget))
    errors.lines.clear()
    tier = make_tier(backend)
    try:
        if backend == "asyncio":
            errors.watch_loop(tier.loop)
        conn = tier.connect(tier.server(settings))
        conn.open(protocols=(subprotocol,) if subprotocol else (), extensions=offer)
        overheld = None
        for chunk in chunks:
            if conn.lost:
                break
            conn.send(chunk)  # an exception here is the failure this target looks for
            held = receive_buffered(conn.proto)
            # A failed connection may hold what arrives after the failure up to its drop limit.
            limit = MAX_BYTES_AFTER_FAILURE if conn.proto._failed else MAX_MESSAGE + 256
            if held > limit + len(chunk) and overheld is None:
                overheld = held
        frames = conn.all_frames()
        if overheld is not None:
            raise AssertionError(f"{overheld} bytes held for unfinished input")
        tier.advance(7)  # past the closing handshake timeout (5 s)
        frames = conn.all_frames()
        gc.collect()  # unhandled errors of Deferreds are logged when collected
        tier.settle()
    finally:
        tier.close()
    assert not errors.lines, f"logged: {errors.lines[0]}"
    problems = [line.text for line in tier.logs if line.level in ("error", "critical")
                or "failed for" in line.text or "Traceback" in line.text]
    assert not problems, f"logged: {problems[0]}"
    closes = [i for i, fr in enumerate(frames) if fr.opcode == f.CLOSE]
    assert len(closes) <= 1, f"{len(closes)} close frames sent"
    if closes:
        close = frames[closes[0]]
        code = close.close_code
        if code is None:
            # Only the answer to a close frame that had no code may have none (nothing to echo;
            # 1005 may not be sent).
            assert not conn.proto.closedByMe and conn.proto.remoteCloseCode is None, \
                "a close frame without a code"
        else:
            assert code in SENDABLE or code in sent_codes, f"sent close code {code}"
        assert not any(fr.opcode in (f.TEXT, f.BINARY, f.CONTINUATION) for fr in frames[closes[0] + 1:]), \
            "a data frame after the close frame"
    if conn.lost or conn.closed_by_us:
        assert closes, "the connection was ended without a close frame"
    data_frames = sum(1 for fr in frames if fr.opcode in (f.TEXT, f.BINARY))
    OUTCOMES[f"server closed with {frames[closes[0]].close_code}" if closes else "still open"] += 1
    OUTCOMES["server sent data" if data_frames else "server sent no data"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("twisted", "asyncio"), required=True)
    parser.add_argument("--examples", type=int, default=150, help="default budget (WSKIT_FUZZ_EXAMPLES overrides)")
    parser.add_argument("--statistics", action="store_true", help="print how the inputs ended")
    args = parser.parse_args(argv)
    errors = ErrorLog(args.backend)
    ran = [0]

    @fuzz_settings(args.examples)
    @given(session=sessions())
    def fuzz_server_after_handshake(session):
        ran[0] += 1
        check_session(args.backend, errors, session)

    fuzz_server_after_handshake()
    print(f"fuzz_target: {args.backend}: {ran[0]} inputs, no failure")
    if args.statistics:
        for outcome, count in OUTCOMES.most_common():
            print(f"  {count:6d}  {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
