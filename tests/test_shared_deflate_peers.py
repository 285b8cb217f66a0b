"""Shared broadcast compression read by independent peers: Node's ws and python-websockets.

``wskit serve`` at its defaults shares one compressor per topic among
subscribers whose last window of the topic is the same
(``broadcast_compression="shared"``). Subscribers with different deflate
parameters, overlapping topics and patterns, a compressed private reply
between broadcasts and a late joiner must each receive exactly their events.
The same scenario runs in Chromium in tests/test_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from support import BACKENDS, run, serve

pytestmark = pytest.mark.timeout(120)

NODE_DIR = Path(__file__).resolve().parent / "node"
PUBSUB = "wskit.pubsub.v1.json"


@pytest.fixture(scope="module", params=[(b, m) for b in BACKENDS for m in ("shared", "fresh")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def server(request):
    backend, mode = request.param
    proc, port = serve(backend, "--broadcast-compression", mode)
    with proc:
        yield f"ws://127.0.0.1:{port}/ws"


def test_node_ws_subscribers_decode_every_shared_broadcast(server):
    node = shutil.which("node")
    assert node and (NODE_DIR / "node_modules" / "ws").is_dir(), "needs Node and ws: npm ci --prefix tests/node"
    done = subprocess.run([node, str(NODE_DIR / "shared_broadcast.js"), server], capture_output=True, timeout=100)
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert done.returncode == 0 and result["ok"], (result, done.stderr.decode()[-2000:])
    assert result["counts"][0] > 40


def tick(n: int) -> dict:
    return {"n": n, "symbol": ["EURUSD", "GBPUSD", "USDJPY"][n % 3], "bid": 1 + (n * 7919 % 1000) / 10000,
            "book": [[k, (n * 31 + k) % 97] for k in range(6)], "pad": "p" * ((n * 37) % 200)}


def test_websockets_subscribers_decode_every_shared_broadcast(server):
    long_topic = "t.private-reply-compressed-by-the-server"
    offers = [
        ClientPerMessageDeflateFactory(),
        ClientPerMessageDeflateFactory(server_max_window_bits=9),
        ClientPerMessageDeflateFactory(server_no_context_takeover=True),
        ClientPerMessageDeflateFactory(client_max_window_bits=10),
        ClientPerMessageDeflateFactory(server_max_window_bits=9),
        ClientPerMessageDeflateFactory(),
    ]
    plan = [["t.a"], ["t.*"], ["t.a"], ["t.a"], ["t.a", "t.b"], []]

    async def scenario() -> None:
        subs = [await connect(server, subprotocols=[PUBSUB], extensions=[offer], compression=None)
                for offer in offers]
        publisher = await connect(server, subprotocols=[PUBSUB], compression=None)
        got: list[list] = [[] for _ in plan]
        replies: list[asyncio.Queue] = [asyncio.Queue() for _ in plan]

        async def read(i: int) -> None:
            async for raw in subs[i]:
                msg = json.loads(raw)
                if msg["type"] == "event":
                    got[i].append((msg["topic"], msg["data"]))
                else:
                    replies[i].put_nowait(msg)

        readers = [asyncio.create_task(read(i)) for i in range(len(subs))]

        async def subscribe(i: int, topic: str) -> None:
            await subs[i].send(json.dumps({"type": "subscribe", "topic": topic}))
            assert (await asyncio.wait_for(replies[i].get(), 10))["type"] == "subscribed"

        for i, topics in enumerate(plan):
            for topic in topics:
                await subscribe(i, topic)
        expected: list[list] = [[] for _ in plan]
        heard = [set(topics) for topics in plan]

        def hears(i: int, topic: str) -> bool:
            return topic in heard[i] or ("t.*" in heard[i] and topic.count(".") == 1)

        async def delivered() -> None:
            while any(len(g) < len(e) for g, e in zip(got, expected)):
                await asyncio.sleep(0.005)

        events = 90
        for n in range(events):
            topic = "t.b" if n % 7 == 3 else "t.a"
            await publisher.send(json.dumps({"type": "publish", "topic": topic, "data": tick(n)}))
            for i in range(len(plan)):
                if hears(i, topic):
                    expected[i].append((topic, tick(n)))
            if n == events // 3:
                await asyncio.wait_for(delivered(), 15)
                await subscribe(2, long_topic)
                await subscribe(5, "t.a")
                heard[2].add(long_topic)
                heard[5].add("t.a")
        await asyncio.wait_for(delivered(), 15)
        for ws in [*subs, publisher]:
            await ws.close()
        for task in readers:
            await task
        for i in range(len(plan)):
            assert got[i] == expected[i], f"subscriber {i}"
        assert all(ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
                   for ws in subs)

    run(scenario(), timeout=90)
