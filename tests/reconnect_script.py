"""Reconnecting wskit clients on one backend, driven by tests/test_reconnect.py.

Usage: python tests/reconnect_script.py BACKEND SCENARIO URL [URL...]

Prints one JSON object per line: ``{"event": ...}`` when the test should act
(restart or stop the server), then ``{"result": {...}}``. One process = one
backend; the same coroutines run on asyncio and on Twisted (ensureDeferred).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from typing import Any

import txaio

import wskit
from wskit import ChatClient, ClientSettings, PubSubClient, ReconnectSettings
from wskit.clients.connect import start_coroutine

# Small delays: a restarted server is back within a second or two.
FAST = ReconnectSettings(initial_delay=0.05, factor=2.0, max_delay=0.4, jitter=0.5)


def emit(**obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def future() -> Any:
    return txaio.create_future()


async def restart(backend: str, url: str) -> dict:
    """(a) a second connection from ``async for``, (b) chat re-joins, (c) pubsub re-subscribes."""
    settings = ClientSettings(reconnect=FAST)
    out: dict = {}
    first_echo, pid = future(), os.getpid()
    reactor = None
    if backend == "twisted":
        from twisted.internet import reactor  # the reactor= argument is honoured

    async def echo_loop() -> list:
        seen: list = []
        async for conn in wskit.connect(url, ["wskit.echo"], settings=settings, reactor=reactor):
            await conn.send(f"hello from connection {len(seen) // 2 + 1}")
            seen.append(await conn.recv())
            if len(seen) == 1:
                txaio.resolve(first_echo, None)
            else:
                await conn.close()
                break
            async for _msg in conn:  # ends quietly when the server goes away
                pass
            seen.append(conn.close_code)
        return seen

    echo = start_coroutine(echo_loop())
    room = f"room-{pid}"
    ann = await ChatClient.reconnecting(url, ChatClient.subprotocols(2, ("json",)), settings=settings)
    out["chat_joined"] = (await ann.join(room, "ann"))["members"]
    ps = await PubSubClient.reconnecting(url, PubSubClient.subprotocols(1, ("msgpack",)), settings=settings)
    await ps.subscribe(f"restart.{pid}.*")
    renewed = future()
    ps.on_reconnect.append(lambda replies: txaio.resolve(renewed, replies))
    await first_echo
    emit(event="ready")

    # (b) the chat client re-joins: a "joined" message comes through, then bob's words.
    async for msg in ann:
        if msg.get("type") == "joined":
            out["chat_rejoined"] = [msg["room"], msg["nick"], msg["members"], msg.get("history")]
            break
    out["chat_reconnects"] = ann.reconnects
    out["chat_rooms"] = ann.rooms
    async with wskit.connect(url, ChatClient.subprotocols(2, ("json",))) as conn:
        bob = ChatClient(conn)
        await bob.join(room, "bob")
        await bob.say(room, "after the restart")
        async for msg in ann:
            if msg.get("type") == "message":
                out["chat_after"] = [msg["from"], msg["text"]]
                break
    # (c) the pubsub client renewed its pattern; an event published now reaches it.
    out["pubsub_renewed"] = [reply["type"] for reply in await renewed]
    out["pubsub_topics"] = ps.topics
    async with wskit.connect(url, PubSubClient.subprotocols(1, ("json",))) as conn:
        await PubSubClient(conn).publish(f"restart.{pid}.x", {"n": 1})
        async for event in ps:
            out["pubsub_after"] = [event["topic"].rsplit(".", 1)[1], event["data"]]
            break
    # (a) the raw loop got a second connection and echoed on it.
    out["echo"] = await echo
    await ann.close()
    await ps.close()
    async for _msg in ann:  # bob's leave may still be queued
        pass
    try:
        await ann.recv()
    except wskit.ConnectionClosed as exc:
        out["chat_after_close"] = ["ended", exc.code]
    return out


async def give_up(backend: str, refused_url: str, live_url: str) -> dict:
    """(e) giving up after max_attempts or give_up_after, with the last error."""
    out: dict = {}

    async def attempt(url: str, policy: ReconnectSettings, on_connected: Any = None) -> dict:
        waits: list[float] = []
        lost_at = time.monotonic()
        conns = 0
        iterator = wskit.connect(url, settings=ClientSettings(reconnect=policy)).__aiter__()
        iterator.on_retry.append(lambda _error, delay: waits.append(round(delay, 3)))
        try:
            async for conn in iterator:
                conns += 1
                if on_connected is not None:
                    on_connected()
                async for _msg in conn:
                    pass
                lost_at = time.monotonic()
            raised = "nothing"
        except Exception as exc:
            raised = type(exc).__name__
        return {"raised": raised, "waits": waits, "attempts": iterator.attempts, "connections": conns,
                "elapsed": time.monotonic() - lost_at}

    out["max_attempts"] = await attempt(
        refused_url, ReconnectSettings(initial_delay=0.1, factor=2, max_delay=10, jitter=0, max_attempts=4))
    out["give_up_after"] = await attempt(
        refused_url, ReconnectSettings(initial_delay=0.2, factor=1, jitter=0, give_up_after=1.0))
    # A kept pubsub client on the same server gives up too: its reader gets the error.
    kept = await PubSubClient.reconnecting(live_url, settings=ClientSettings(
        reconnect=ReconnectSettings(initial_delay=0.1, factor=2, jitter=0, max_attempts=2)))
    await kept.subscribe("anything")
    out["lost"] = await attempt(
        live_url, ReconnectSettings(initial_delay=0.1, factor=2, jitter=0, max_attempts=3),
        on_connected=lambda: emit(event="ready"))
    try:
        async for _event in kept:
            pass
        out["kept"] = "ended"
    except Exception as exc:
        out["kept"] = [type(exc).__name__, kept.reconnects]
    return out


async def refusals(backend: str, url: str) -> dict:
    """(f) a 4xx refusal is raised at once; a 503 is retried (the server takes one connection)."""
    out: dict = {}
    waits: list = []
    started = time.monotonic()
    iterator = wskit.connect(url, ["no.such.protocol"], settings=ClientSettings(reconnect=FAST)).__aiter__()
    iterator.on_retry.append(lambda error, delay: waits.append(str(error)))
    try:
        async for _conn in iterator:
            out["refused_400"] = "connected"
            break
    except wskit.HandshakeError as exc:
        out["refused_400"] = [exc.status, waits, iterator.attempts, time.monotonic() - started < 2]

    holder = await wskit.connect(url, ["wskit.echo"])
    statuses: list = []

    def retrying(error: BaseException, delay: float) -> None:
        statuses.append(getattr(error, "status", None))
        holder.close()  # the place frees up: the next attempt gets in

    iterator = wskit.connect(url, ["wskit.echo"], settings=ClientSettings(reconnect=FAST)).__aiter__()
    iterator.on_retry.append(retrying)
    async for conn in iterator:
        await conn.send("in")
        out["retried_503"] = [statuses[:1], await conn.recv()]
        await conn.close()
        break
    return out


async def flood(backend: str, url: str, count: int = 3000) -> dict:
    """A subscriber that reads nothing while thousands of events arrive, then everything."""
    out: dict = {}
    settings = ClientSettings(max_queue=8)
    conn = await wskit.connect(url, PubSubClient.subprotocols(1, ("json",)), settings=settings)
    peak = [0]

    class Counted(collections.deque):
        def append(self, item: Any) -> None:
            super().append(item)
            peak[0] = max(peak[0], len(self))

    conn._queue = Counted(conn._queue)
    topic = f"flood.{os.getpid()}"
    subscriber = PubSubClient(conn)
    await subscriber.subscribe(topic)
    async with wskit.connect(url, PubSubClient.subprotocols(1, ("json",))) as pub:
        publisher = PubSubClient(pub)
        for i in range(count):
            await publisher.publish(topic, {"n": i})
        await publisher.subscribe("flood.done")  # a round trip: every event was published
    out["paused_while_flooded"] = conn._reading_paused
    out["queued_while_flooded"] = len(conn._queue)
    received = []
    async for event in subscriber:
        received.append(event["data"]["n"])
        if len(received) == count:
            break
    out["received_in_order"] = received == list(range(count))
    out["peak"] = peak[0]
    out["paused_after"] = conn._reading_paused
    await conn.close()
    return out


async def untrusted(backend: str, url: str) -> dict:
    """A wss:// server whose certificate is not trusted: raised at once, not retried."""
    waits: list = []
    iterator = wskit.connect(url, settings=ClientSettings(reconnect=FAST)).__aiter__()
    iterator.on_retry.append(lambda error, delay: waits.append(str(error)))
    try:
        async for _conn in iterator:
            return {"untrusted": "connected"}
    except Exception as exc:
        return {"untrusted": ["certificate verify failed" in str(exc), waits, iterator.attempts]}
    return {"untrusted": "ended"}


SCENARIOS = {"restart": restart, "give_up": give_up, "refusals": refusals, "flood": flood, "untrusted": untrusted}


if __name__ == "__main__":
    backend, scenario, *urls = sys.argv[1:]

    async def main(stopping: Any) -> dict:
        return await SCENARIOS[scenario](backend, *urls)

    emit(result=wskit.run(main, backend))
