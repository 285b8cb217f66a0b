"""Broadcast subscribers and one publisher on picows: benchmarks/node/broadcast.js in Python.

    python benchmarks/broadcast_picows.py --url ws://127.0.0.1:PORT/ws --subscribers N --events M
                                          --ticks FILE [--deflate] [--window W] [--warmup K] [--timeout S]

The same run, command line and standard input/output as broadcast.js (see
there): N subscribers of ``wskit.pubsub.v1.json`` on one topic, one publisher
keeping at most W events in flight, a warm-up, ``{"ready": ...}``, a ``go``
line, ``{"done": ...}``. The difference is the client: picows (its frame
parser in Cython, on uvloop when installed) and Python's zlib for
permessage-deflate, so a subscriber spends a few microseconds per message
where a Node ``ws`` subscriber spends some 35 (its inflate goes through
Node's asynchronous zlib streams). With a fast server, 500 Node subscribers
on the same two cores are the limit of a compressed broadcast; these show
how fast the server can deliver.

permessage-deflate: offered as ``ws`` and browsers offer it
(``client_max_window_bits``); each subscriber inflates with one raw zlib
stream of the largest window, which decodes a server's stream whatever window
and context takeover it chose. Wire bytes are the frames as read (header
and payload). Every subscriber's first and last event of a phase is parsed
and compared with what was published; every message is inflated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import zlib

from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

PROTOCOL = "wskit.pubsub.v1.json"
TOPIC = "ticks.bench"
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: removed by the sender, appended before inflating


def say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Failed(Exception):
    pass


class Phase:
    """One run of published events: what every subscriber must receive."""

    def __init__(self, expected: list[str], subscribers: int):
        self.expected = expected
        self.total = subscribers * len(expected)
        self.delivered = 0
        self.payload_bytes = 0
        self.wire_bytes = 0
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()


class Subscriber(WSListener):
    def __init__(self, run: "Run", index: int, response):
        self.run = run
        self.index = index
        self.extensions = response.headers.get("sec-websocket-extensions", "")
        self.protocol = response.headers.get("sec-websocket-protocol", "")
        self.deflate = "permessage-deflate" in self.extensions
        self.inflater = zlib.decompressobj(-15) if self.deflate else None
        self.count = 0
        self.parts: list[bytes] | None = None  # a fragmented message so far
        self.compressed = False
        self.subscribed: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport, frame) -> None:
        kind = frame.msg_type
        size = frame.payload_size
        if kind is WSMsgType.CLOSE:
            self.run.fail(f"subscriber {self.index} closed early ({frame.get_close_code()})")
            return
        if kind is not WSMsgType.TEXT and kind is not WSMsgType.CONTINUATION:
            if kind is WSMsgType.BINARY:
                self.run.fail(f"subscriber {self.index}: a binary message")
            return
        phase = self.run.phase
        if phase is not None:
            phase.wire_bytes += size + (2 if size < 126 else 4 if size < 65536 else 10)
        if kind is WSMsgType.TEXT:
            self.compressed = frame.rsv1
        data = frame.get_payload_as_bytes()
        if not frame.fin or self.parts is not None:
            if self.parts is None:
                self.parts = []
            self.parts.append(data)
            if not frame.fin:
                return
            data, self.parts = b"".join(self.parts), None
        if self.compressed:
            data = self.inflater.decompress(data + TAIL)
        self.message(data, phase)

    def message(self, data: bytes, phase: Phase | None) -> None:
        if phase is None:
            msg = json.loads(data)
            if msg.get("type") != "subscribed" or msg.get("topic") != TOPIC:
                self.run.fail(f"expected subscribed, got {data[:200]!r}")
            elif not self.subscribed.done():
                self.subscribed.set_result(None)
            return
        n = self.count
        self.count = n + 1
        if n == 0 or n == len(phase.expected) - 1:  # each subscriber's first and last event, parsed
            msg = json.loads(data)
            if (msg.get("type") != "event" or msg.get("topic") != TOPIC
                    or json.dumps(msg.get("data"), separators=(",", ":"), ensure_ascii=False) != phase.expected[n]):
                self.run.fail(f"subscriber {self.index}: event {n} is not the one published: {data[:200]!r}")
                return
        phase.payload_bytes += len(data)
        delivered = phase.delivered = phase.delivered + 1
        if delivered % self.run.subscribers == 0 or delivered == phase.total:
            self.run.publish_more()

    def on_ws_disconnected(self, transport) -> None:
        self.run.fail(f"subscriber {self.index} disconnected early")


class Publisher(WSListener):
    def __init__(self, run: "Run"):
        self.run = run

    def on_ws_frame(self, transport, frame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.run.fail(f"publisher got an unexpected message: {frame.get_payload_as_bytes()[:200]!r}")

    def on_ws_disconnected(self, transport) -> None:
        self.run.fail("publisher disconnected early")


class Run:
    def __init__(self, opts: argparse.Namespace, ticks: list):
        self.opts = opts
        self.ticks = ticks
        self.subscribers = opts.subscribers
        self.phase: Phase | None = None
        self.failed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.finished = False
        self.publisher = None
        self.messages: list[bytes] = []
        self.published = 0
        self.subs: list[tuple] = []

    def fail(self, message: str) -> None:
        if not self.finished and not self.failed.done():
            self.failed.set_exception(Failed(message))

    async def connect(self, factory) -> tuple:
        headers = {"Sec-WebSocket-Protocol": PROTOCOL}
        if self.opts.deflate:
            headers["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits"
        return await ws_connect(factory, self.opts.url, extra_headers=headers, websocket_handshake_timeout=30)

    async def open_all(self) -> None:
        count, parallel = self.subscribers, 50  # batches stay under the servers' listen backlog
        for first in range(0, count, parallel):
            batch = [self.connect(lambda req, resp, k=k: Subscriber(self, k, resp))
                     for k in range(first, min(count, first + parallel))]
            self.subs += await asyncio.gather(*batch)
        for transport, sub in self.subs:
            transport.send(WSMsgType.TEXT, json.dumps({"type": "subscribe", "topic": TOPIC}).encode())
        await self.guard(asyncio.gather(*(sub.subscribed for _, sub in self.subs)))
        self.publisher, _ = await self.connect(lambda req, resp: Publisher(self))

    async def guard(self, awaitable):
        """Wait for ``awaitable``, or raise the first failure reported meanwhile."""
        task = asyncio.ensure_future(awaitable)
        await asyncio.wait([task, self.failed], return_when=asyncio.FIRST_COMPLETED)
        if self.failed.done():
            task.cancel()
            self.failed.result()
        return task.result()

    def publish_more(self) -> None:
        phase = self.phase
        if phase.delivered == phase.total:
            if not phase.done.done():
                phase.done.set_result(None)
            return
        window, subs = self.opts.window, self.subscribers
        while self.published < len(self.messages) and self.published - phase.delivered // subs < window:
            self.publisher.send(WSMsgType.TEXT, self.messages[self.published])
            self.published += 1

    async def publish_all(self, first: int, count: int) -> Phase:
        data = [self.ticks[(first + i) % len(self.ticks)] for i in range(count)]
        self.messages = [json.dumps({"type": "publish", "topic": TOPIC, "data": d}).encode() for d in data]
        self.published = 0
        phase = Phase([json.dumps(d, separators=(",", ":"), ensure_ascii=False) for d in data], self.subscribers)
        for _, sub in self.subs:
            sub.count = 0
        self.phase = phase
        self.publish_more()
        await self.guard(phase.done)
        short = [sub.index for _, sub in self.subs if sub.count != count]
        if short:
            raise Failed(f"subscriber {short[0]} received {self.subs[short[0]][1].count} events, not {count}")
        return phase

    def close_all(self) -> list:
        self.finished = True
        transports = [t for t, _ in self.subs] + ([self.publisher] if self.publisher else [])
        for transport in transports:
            try:
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            except Exception:
                pass
        return transports


async def main(opts: argparse.Namespace) -> int:
    with open(opts.ticks, encoding="utf-8") as f:
        ticks = json.load(f)
    run = Run(opts, ticks)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(opts.timeout):
            await run.open_all()
            await run.publish_all(opts.events, opts.warmup)
            _, first = run.subs[0]
            say({"ready": True, "subscribers": len(run.subs), "extensions": first.extensions,
                 "protocol": first.protocol})
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() != "go":
                raise Failed(f"expected 'go' on standard input, got {line!r}")
            t0 = time.perf_counter()
            phase = await run.publish_all(0, opts.events)
            elapsed_ms = (time.perf_counter() - t0) * 1000
            run.finished = True
            say({"done": True, "deliveries": phase.delivered, "elapsed_ms": elapsed_ms,
                 "wire_bytes": phase.wire_bytes, "payload_bytes": phase.payload_bytes})
    except TimeoutError:
        say({"error": f"timed out after {opts.timeout} s"})
        return 2
    except (Failed, OSError, RuntimeError) as exc:
        say({"error": str(exc) or type(exc).__name__})
        return 1
    finally:
        transports = run.close_all()
        try:
            async with asyncio.timeout(5):
                await asyncio.gather(*(t.wait_disconnected() for t in transports), return_exceptions=True)
        except TimeoutError:
            pass
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--ticks", required=True)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main(options)))
    sys.exit(uvloop.run(main(options)))
