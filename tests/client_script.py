"""Runs the awaitable wskit clients against a server on one backend; prints one JSON object.

Usage: python tests/client_script.py BACKEND URL

One process = one backend, so the tests run this once per backend. The same
coroutine runs on asyncio (asyncio.run) and on Twisted (ensureDeferred under
task.react); on Twisted an inlineCallbacks variant runs as well.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import wskit
from wskit import ChatClient, PubSubClient, RPCClient


async def scenario(url: str, backend: str | None) -> dict:
    out: dict = {}
    # Raw echo: str and bytes pass through; async with closes cleanly.
    async with wskit.connect(url, subprotocols=["wskit.echo"], backend=backend) as conn:
        await conn.send("hello")
        await conn.send(b"\x00\x01")
        text, binary = await conn.recv(), await conn.recv()
        out["echo"] = [conn.subprotocol, text, binary.hex()]
    out["echo_closed"] = [conn.is_open, conn.close_code]

    # RPC over msgpack: results, typed errors, discover, notifications.
    async with wskit.connect(url, subprotocols=["wskit.rpc.v1.msgpack"], backend=backend) as conn:
        rpc = RPCClient(conn)
        out["rpc_subprotocol"] = conn.subprotocol
        out["rpc_add"] = await rpc.call("add", 1, 2, 3.5)
        out["rpc_echo_named"] = await rpc.call("echo", value={"k": [1, 2]})
        try:
            await rpc.call("no.such.method")
            out["rpc_unknown"] = "no error"
        except wskit.RPCError as exc:
            out["rpc_unknown"] = [exc.code, exc.message]
        try:
            await rpc.call("add", "x")
        except wskit.RPCError as exc:
            out["rpc_bad_params"] = exc.code
        await rpc.notify("echo", 1)
        out["rpc_sleep"] = await rpc.call("sleep", 0.01)
        out["rpc_discover"] = sorted(m["name"] for m in (await rpc.discover())["methods"])

    # Chat v2 over json with a v1 msgpack peer, in a room of their own (rooms keep their history).
    room = out["chat_room"] = f"room-{os.getpid()}"
    async with wskit.connect(url, subprotocols=ChatClient.subprotocols(2, ("json",)), backend=backend) as c1, \
            wskit.connect(url, subprotocols=["wskit.chat.v1.msgpack"], backend=backend) as c2:
        ann, bob = ChatClient(c1), ChatClient(c2)
        joined = await ann.join(room, "ann")
        out["chat_joined"] = [joined["type"], joined["members"], joined["history"]]
        joined = await bob.join(room, "bob")
        out["chat_joined_v1"] = [joined["members"], "history" in joined]
        out["chat_presence"] = await ann.recv()
        await bob.say(room, "hi ann")
        got = await ann.recv()
        out["chat_v2_got"] = [got["from"], got["text"], isinstance(got.get("id"), str), isinstance(got.get("ts"), float)]
        got = await bob.recv()
        out["chat_v1_own"] = sorted(got)
        try:
            await bob.join(room, "bob")
        except wskit.RequestError as exc:
            out["chat_error"] = exc.code
        left = await bob.leave(room)
        out["chat_left"] = left["type"]
        out["chat_presence_leave"] = (await ann.recv())["event"]

        # Recovery: carl's client remembers where it was in the room; joining again on a new
        # connection sends it as since/epoch and gets exactly the messages missed meanwhile.
        async with wskit.connect(url, subprotocols=ChatClient.subprotocols(2, ("json",)), backend=backend) as c3:
            carl = ChatClient(c3)
            await carl.join(room, "carl")
            await ann.say(room, "seen")
            while (await carl.recv()).get("text") != "seen":
                pass
        for text in ("missed 1", "missed 2"):
            await ann.say(room, text)
        while (await ann.recv()).get("text") != "missed 2":  # stored once it comes back
            pass
        async with wskit.connect(url, subprotocols=ChatClient.subprotocols(2, ("json",)), backend=backend) as c4:
            again = ChatClient(c4, positions=carl.positions)
            joined = await again.join(room, "carl")
            out["chat_recovered"] = [[m["text"] for m in joined["history"]], joined["history_lost"],
                                     again.positions[room] == (joined["offset"], joined["epoch"])]

    # Pubsub: pattern subscription, events via async for.
    async with wskit.connect(url, subprotocols=PubSubClient.subprotocols(), backend=backend) as conn:
        ps = PubSubClient(conn)
        out["pubsub_subscribed"] = (await ps.subscribe("ticks.*"))["type"]
        for i in range(3):
            await ps.publish(f"ticks.t{i}", {"n": i})
        events = []
        async for event in ps:
            events.append([event["topic"], event["data"]["n"]])
            if len(events) == 3:
                break
        out["pubsub_events"] = events

    # Iteration ends when the connection closes normally.
    conn = await wskit.connect(url, subprotocols=["wskit.echo"], backend=backend)
    await conn.send("last")
    await conn.close()
    received = [msg async for msg in conn]
    out["iter_after_close"] = [received, conn.close_code]
    try:
        await conn.send("too late")
        out["send_after_close"] = "sent"
    except wskit.ConnectionClosed as exc:
        out["send_after_close"] = exc.code
    # A refused handshake is a HandshakeError.
    try:
        await wskit.connect(url, subprotocols=["no.such.protocol"], backend=backend)
        out["refused"] = "connected"
    except wskit.HandshakeError as exc:
        out["refused"] = exc.status
    return out


def run_twisted_extras(url: str) -> Any:
    from twisted.internet import defer

    @defer.inlineCallbacks
    def with_inline_callbacks():
        conn = yield wskit.connect(url, subprotocols=["wskit.rpc.v1.json"], backend="twisted")
        rpc = RPCClient(conn)
        value = yield rpc.call("add", 40, 2)
        yield conn.close()
        return [conn.subprotocol, value, conn.close_code]

    return with_inline_callbacks()


def run_scenario(backend: str, url: str) -> dict:
    async def main(stopping) -> dict:
        # backend=None: detected from the running loop or reactor.
        result = await scenario(url, None)
        if backend == "twisted":
            result["inline_callbacks"] = await run_twisted_extras(url)
        return result

    return wskit.run(main, backend)


if __name__ == "__main__":
    backend, url = sys.argv[1], sys.argv[2]
    results = run_scenario(backend, url)
    sys.stdout.write(json.dumps(results) + "\n")
