"""wskit.pubsub.v1.json / .msgpack against real servers on both backends."""

from __future__ import annotations

import os
import sys

import pytest
from app_support import Peer, Server, open_peer, server_fixture
from support import BACKENDS, ROOT, ServerProcess, run

server = server_fixture("--max-buffered-bytes", "262144")


def test_each_pubsub_name_negotiated_and_msgpack_preferred(server):
    async def go():
        for name in ["wskit.pubsub.v1.json", "wskit.pubsub.v1.msgpack"]:
            peer = await open_peer(server, [name])
            assert peer.subprotocol == name
            await peer.close()
        peer = await open_peer(server, ["wskit.pubsub.v1.json", "wskit.pubsub.v1.msgpack"])
        assert peer.subprotocol == "wskit.pubsub.v1.msgpack"
        await peer.close()

    run(go())


def test_event_published_over_msgpack_reaches_json_subscriber(server):
    async def go():
        sub = await open_peer(server, ["wskit.pubsub.v1.json"])
        pub = await open_peer(server, ["wskit.pubsub.v1.msgpack"])
        await sub.send({"type": "subscribe", "topic": "news.a"})
        assert await sub.recv() == {"type": "subscribed", "topic": "news.a"}
        await pub.send({"type": "publish", "topic": "news.a", "data": {"x": [1, 2.5, "s", None], "b": b"\x01"}})
        event = await sub.recv()
        # msgpack bytes reach JSON subscribers base64-encoded.
        assert event == {"type": "event", "topic": "news.a", "data": {"x": [1, 2.5, "s", None], "b": "AQ=="}}
        await sub.send({"type": "unsubscribe", "topic": "news.a"})
        assert await sub.recv() == {"type": "unsubscribed", "topic": "news.a"}
        await pub.send({"type": "publish", "topic": "news.a", "data": 1})
        await pub.send({"type": "subscribe", "topic": "news.b"})
        assert (await pub.recv())["type"] == "subscribed"
        await pub.send({"type": "publish", "topic": "news.b", "data": 2})
        assert await pub.recv() == {"type": "event", "topic": "news.b", "data": 2}
        # The unsubscribed JSON side got nothing more: its next message is the answer to this.
        await sub.send({"type": "subscribe", "topic": "news.c", "ref": 1})
        assert await sub.recv() == {"type": "subscribed", "topic": "news.c", "ref": 1}
        await sub.close()
        await pub.close()

    run(go())


def test_topic_patterns(server):
    async def go():
        sub = await open_peer(server, ["wskit.pubsub.v1.msgpack"])
        await sub.send({"type": "subscribe", "topic": "px.*"})
        await sub.recv()
        await sub.send({"type": "subscribe", "topic": "px.a"})  # overlapping: still one delivery
        await sub.recv()
        await sub.send({"type": "subscribe", "topic": "deep.**"})
        await sub.recv()
        for topic in ["px.a", "px.b.c", "py.a", "deep.x.y", "px.b"]:
            await sub.send({"type": "publish", "topic": topic, "data": topic})
        got = [(await sub.recv())["data"] for _ in range(3)]
        assert got == ["px.a", "deep.x.y", "px.b"]
        await sub.close()

    run(go())


def test_bad_input_errors_and_budget(server):
    async def go():
        peer = await open_peer(server, ["wskit.pubsub.v1.json"])
        cases = [
            ('{"type": "subscribe"}', "bad-field"),
            ('{"type": "subscribe", "topic": ["a"]}', "bad-field"),
            ('{"type": "subscribe", "topic": "a..b"}', "bad-field"),
            ('{"type": "subscribe", "topic": "a.b*"}', "bad-field"),
            ('{"type": "publish", "topic": "a.*", "data": 1}', "bad-field"),
            ('{"type": "publish", "topic": "a"}', "bad-field"),
            ('{"type": "subscribe", "topic": "' + "t" * 65 + '"}', "too-long"),
            ('{"type": "shout"}', "unknown-type"),
            ('"just a string"', "bad-message"),
            ("nope", "bad-payload"),
        ]
        for raw, code in cases:
            await peer.ws.send(raw)
            reply = await peer.recv()
            assert reply["type"] == "error" and reply["code"] == code, (raw, reply)
        await peer.send({"type": "subscribe", "topic": "fine"})
        assert (await peer.recv())["type"] == "subscribed"
        await peer.ws.send("nope")  # the 11th bad message
        assert await peer.close_code() == 1008

    run(go())


def test_binary_frame_on_json_pubsub_closes_1003(server):
    async def go():
        peer = await open_peer(server, ["wskit.pubsub.v1.json"])
        await peer.ws.send(b'{"type": "subscribe", "topic": "a"}')
        assert await peer.close_code() == 1003

    run(go())


def test_slow_subscriber_is_dropped_and_others_get_everything(server: Server):
    """A subscriber that stops reading is cut off once its unsent bytes pass the cap."""
    from websockets.asyncio.client import connect

    async def go():
        # Uncompressed: the server sends each event's pre-framed bytes (one PreparedMessage).
        fast = Peer(await connect(server.url, subprotocols=["wskit.pubsub.v1.msgpack"], compression=None,
                                  max_size=None))
        # max_queue=1: websockets stops reading the socket once one message is waiting.
        slow_ws = await connect(server.url, subprotocols=["wskit.pubsub.v1.msgpack"], max_queue=1,
                                max_size=None, compression=None)
        import msgpack

        for ws in (fast.ws, slow_ws):
            await ws.send(msgpack.packb({"type": "subscribe", "topic": "flood"}))
        await fast.recv()
        blob = os.urandom(65536)  # incompressible: deflate must not shrink the backlog
        count = 300  # ~20 MB: more than the kernel's socket buffers plus the 256 KiB cap
        received = 0
        # Lock-step: the fast subscriber reads each event before the next is published,
        # so only the slow one builds a backlog.
        for _ in range(count):
            await fast.send({"type": "publish", "topic": "flood", "data": blob})
            event = await fast.recv(timeout=20)
            assert event["type"] == "event" and event["data"] == blob
            received += 1
        assert received == count
        server.proc.wait_for_log("too slow a consumer", timeout=10)
        await fast.close()
        slow_ws.transport.abort()

    run(go(), timeout=90)


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_side_publish_api_and_future_returning_methods(backend):
    cmd = [sys.executable, str(ROOT / "tests" / "ticker_server.py"), backend, "0"]
    with ServerProcess([], cmd=cmd) as proc:
        server = Server(backend, proc.port, proc)

        async def go():
            json_sub = await open_peer(server, ["wskit.pubsub.v1.json"])
            mp_sub = await open_peer(server, ["wskit.pubsub.v1.msgpack"])
            for peer in (json_sub, mp_sub):
                await peer.send({"type": "subscribe", "topic": "ticks.*"})
                await peer.recv_until("subscribed")
            a = await json_sub.recv_until("event")
            b = await mp_sub.recv_until("event")
            assert a["topic"] == b["topic"] == "ticks.demo" and isinstance(a["data"]["n"], int)
            proc.wait_for_log("reached=2")
            await json_sub.close()
            await mp_sub.close()
            # A method answering with the backend's own future type (Deferred / asyncio Future).
            rpc = await open_peer(server, ["wskit.rpc.v1.json"])
            await rpc.send({"jsonrpc": "2.0", "method": "later_double", "params": [21], "id": 1})
            assert await rpc.recv() == {"jsonrpc": "2.0", "result": 42, "id": 1}
            await rpc.close()

        run(go())
