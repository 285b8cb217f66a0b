"""Servers sharing rooms and topics through a real redis-server: a Twisted server (A) and an
asyncio server (B) on one Redis, probed with python-websockets.

redis-server runs on a free port without persistence, in a temporary directory; a machine
without it fails these tests (never skips them).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time

import pytest
from app_support import Peer, Server, open_peer
from redis_support import RedisServer
from support import run, serve

# Heartbeats every 0.5 s, members of a silent server gone after 2 s (defaults: 5 s and 15 s).
OPTIONS = "?heartbeat=0.5&presence_timeout=2"
_rooms = itertools.count()


def new_room(prefix: str = "r") -> str:
    return f"{prefix}{next(_rooms)}"


def start(backend: str, redis: RedisServer, *args: str) -> Server:
    proc, port = serve(backend, "--hub", redis.url + OPTIONS, "--history-size", "20", "--no-static",
                       "--ticker-interval", "0", *args)
    return Server(backend, port, proc)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def servers(redis):
    a, b = start("twisted", redis), start("asyncio", redis)
    with a.proc, b.proc:
        yield a, b


async def joined(peer: Peer, room: str, nick: str, **extra) -> dict:
    await peer.send({"type": "join", "room": room, "nick": nick, **extra})
    return await peer.recv_until("joined")


async def said(peer: Peer, room: str, text: str) -> None:
    await peer.send({"type": "say", "room": room, "text": text})


async def message(peer: Peer, text: str, timeout: float = 5) -> dict:
    """The next message with this text (other messages and presence are passed over)."""
    while True:
        got = await peer.recv_until("message", timeout)
        if got["text"] == text:
            return got


def test_a_v1_client_on_twisted_and_a_v2_client_on_asyncio_share_a_room(servers):
    a, b = servers

    async def go():
        room = new_room()
        ann = await open_peer(a, ["wskit.chat.v1.json"])
        bob = await open_peer(b, ["wskit.chat.v2.msgpack"])
        assert (await joined(ann, room, "ann"))["members"] == ["ann"]
        answer = await joined(bob, room, "bob")
        assert answer["members"] == ["ann", "bob"] and answer["history"] == [] and answer["offset"] == 0
        epoch = answer["epoch"]
        assert await ann.recv_until("presence") == {"type": "presence", "room": room, "nick": "bob",
                                                     "event": "join"}
        await said(ann, room, "from A")
        got = await message(bob, "from A")
        assert got["from"] == "ann" and (got["offset"], got["epoch"]) == (1, epoch)
        assert await message(ann, "from A") == {"type": "message", "room": room, "from": "ann", "text": "from A"}
        await said(bob, room, "from B")
        assert await message(ann, "from B") == {"type": "message", "room": room, "from": "bob", "text": "from B"}
        assert (await message(bob, "from B"))["offset"] == 2
        # A nick is unique in the room across servers.
        carl = await open_peer(a, ["wskit.chat.v2.json"])
        await carl.send({"type": "join", "room": room, "nick": "bob"})
        assert (await carl.recv())["code"] == "nick-taken"
        await bob.close()
        assert await ann.recv_until("presence") == {"type": "presence", "room": room, "nick": "bob",
                                                     "event": "leave"}
        assert (await joined(carl, room, "bob"))["members"] == ["ann", "bob"]  # free again
        for peer in (ann, carl):
            await peer.close()

    run(go())


def test_requests_sent_back_to_back_are_answered_in_order(servers):
    a, b = servers

    async def go():
        room = new_room()
        peer = await open_peer(b, ["wskit.chat.v2.json"])
        # The join waits on Redis; the says behind it wait their turn.
        await peer.send({"type": "join", "room": room, "nick": "quick", "ref": 1})
        for i in range(5):
            await said(peer, room, f"m{i}")
        await peer.send({"type": "leave", "room": room, "ref": 2})
        kinds = []
        while not kinds or kinds[-1] != "left":
            got = await peer.recv()
            kinds.append(got["type"] if got["type"] != "message" else got["text"])
        assert kinds == ["joined", "m0", "m1", "m2", "m3", "m4", "left"]
        await peer.close()

    run(go())


def channel_subscribers(redis: RedisServer, topic: str) -> int:
    reply = redis.command("PUBSUB", "NUMSUB", f"wskit:0:{topic}")
    return int(reply.rstrip(b"\r\n").rsplit(b":", 1)[-1])


def test_each_server_subscribes_once_per_room_it_has_members_in(servers, redis):
    a, b = servers

    async def go():
        room = new_room()
        peers = [await open_peer(a, ["wskit.chat.v2.json"]) for _ in range(3)]
        for i, peer in enumerate(peers):
            await joined(peer, room, f"n{i}")
        assert channel_subscribers(redis, f"chat.{room}") == 1  # server A, once for its three members
        other = await open_peer(b, ["wskit.chat.v1.json"])
        await joined(other, room, "b")
        assert channel_subscribers(redis, f"chat.{room}") == 2
        for peer in peers:
            await peer.send({"type": "leave", "room": room})
            await peer.recv_until("left")
        await other.close()
        deadline = time.monotonic() + 5
        while channel_subscribers(redis, f"chat.{room}") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert channel_subscribers(redis, f"chat.{room}") == 0  # the last member gone on each server
        for peer in peers:
            await peer.close()

    run(go())


def test_history_written_through_one_server_is_joined_on_the_other(servers):
    a, b = servers

    async def go():
        room = new_room()
        writer = await open_peer(b, ["wskit.chat.v2.json"])
        await joined(writer, room, "writer")
        for i in range(3):
            await said(writer, room, f"m{i}")
        last = await message(writer, "m2")
        await writer.close()
        reader = await open_peer(a, ["wskit.chat.v2.msgpack"])
        answer = await joined(reader, room, "reader")
        assert [m["text"] for m in answer["history"]] == ["m0", "m1", "m2"]
        assert answer["history"][-1] == last  # exactly as delivered
        assert [m["offset"] for m in answer["history"]] == [1, 2, 3] and answer["offset"] == 3
        assert answer["members"] == ["reader"]
        await reader.close()

    run(go())


def test_a_pubsub_event_published_over_msgpack_on_b_reaches_a_json_subscriber_on_a(servers):
    a, b = servers

    async def go():
        sub = await open_peer(a, ["wskit.pubsub.v1.json"])
        pattern_sub = await open_peer(a, ["wskit.pubsub.v1.msgpack"])
        pub = await open_peer(b, ["wskit.pubsub.v1.msgpack"])
        await sub.send({"type": "subscribe", "topic": "ticks.EURUSD"})
        assert await sub.recv() == {"type": "subscribed", "topic": "ticks.EURUSD"}
        await sub.send({"type": "subscribe", "topic": "ticks.*"})  # the same event once, not twice
        assert await sub.recv() == {"type": "subscribed", "topic": "ticks.*"}
        await pattern_sub.send({"type": "subscribe", "topic": "ticks.**"})
        assert await pattern_sub.recv() == {"type": "subscribed", "topic": "ticks.**"}
        await pub.send({"type": "publish", "topic": "ticks.EURUSD", "data": {"bid": 1.0841, "raw": b"\x01\x02"}})
        await pub.send({"type": "publish", "topic": "ticks.fx.GBP", "data": 2})
        event = {"type": "event", "topic": "ticks.EURUSD", "data": {"bid": 1.0841, "raw": "AQI="}}
        assert await sub.recv() == event
        assert await pattern_sub.recv() == dict(event, data={"bid": 1.0841, "raw": b"\x01\x02"})
        assert await pattern_sub.recv() == {"type": "event", "topic": "ticks.fx.GBP", "data": 2}
        with pytest.raises(asyncio.TimeoutError):  # ticks.fx.GBP is not for ticks.* nor a second copy
            await sub.recv(timeout=0.5)
        for peer in (sub, pattern_sub, pub):
            await peer.close()

    run(go())


def test_a_client_rejoining_on_the_other_server_with_since_gets_exactly_what_it_missed(servers):
    a, b = servers

    async def go():
        room = new_room()
        talker = await open_peer(b, ["wskit.chat.v1.msgpack"])
        await joined(talker, room, "talker")
        client = await open_peer(a, ["wskit.chat.v2.json"])
        epoch = (await joined(client, room, "me"))["epoch"]
        await said(talker, room, "seen")
        seen = await message(client, "seen")
        await client.send({"type": "leave", "room": room})
        await client.recv_until("left")
        for text in ("one", "two", "three"):
            await said(talker, room, text)
        await message(talker, "three")
        await client.close()
        again = await open_peer(b, ["wskit.chat.v2.msgpack"])
        answer = await joined(again, room, "me", since=seen["offset"], epoch=epoch)
        assert [m["text"] for m in answer["history"]] == ["one", "two", "three"]
        assert answer["history_lost"] is False and answer["epoch"] == epoch
        assert [m["offset"] for m in answer["history"]] == [seen["offset"] + i for i in (1, 2, 3)]
        await said(talker, room, "live")
        assert (await message(again, "live"))["offset"] == seen["offset"] + 4
        for peer in (talker, again):
            await peer.close()

    run(go())


def test_members_of_a_killed_server_disappear_from_the_others_within_the_presence_timeout(redis):
    a, b, c = start("twisted", redis), start("asyncio", redis), start("asyncio", redis)
    with a.proc, b.proc, c.proc:

        async def go():
            room = new_room("presence")
            ann = await open_peer(a, ["wskit.chat.v2.json"])
            await joined(ann, room, "ann")
            bob = await open_peer(b, ["wskit.chat.v2.json"])
            assert (await joined(bob, room, "bob"))["members"] == ["ann", "bob"]
            dan = await open_peer(c, ["wskit.chat.v1.json"])
            assert (await joined(dan, room, "dan"))["members"] == ["ann", "bob", "dan"]
            assert (await bob.recv_until("presence"))["nick"] == "dan"
            # A server stopped cleanly says so: its members leave at the next heartbeat of another.
            c.proc.proc.terminate()
            stopped = time.monotonic()
            assert await bob.recv_until("presence", timeout=10) == {
                "type": "presence", "room": room, "nick": "dan", "event": "leave"}
            assert time.monotonic() - stopped < 0.5 + 1.5
            a.proc.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            leave = await bob.recv_until("presence", timeout=10)
            waited = time.monotonic() - killed
            assert leave == {"type": "presence", "room": room, "nick": "ann", "event": "leave"}
            # presence_timeout 2 s, heartbeat 0.5 s: gone everywhere within 2.5 s (plus scheduling).
            assert waited < 2.5 + 1.5, waited
            carl = await open_peer(b, ["wskit.chat.v2.json"])
            assert (await joined(carl, room, "ann"))["members"] == ["bob", "ann"]  # the nick is free
            for peer in (bob, carl):
                await peer.close()

        run(go())


def test_redis_killed_and_restarted_mid_chat(tmp_path):
    redis = RedisServer(str(tmp_path)).start()
    try:
        a, b = start("twisted", redis), start("asyncio", redis)
        with a.proc, b.proc:
            try:
                run(_restart_mid_chat(redis, a, b), timeout=60)
            finally:
                for server in (a, b):
                    print(f"-- {server.backend} log:", *server.proc.lines[-40:], sep="\n")
        for server in (a, b):
            log = "\n".join(server.proc.lines)
            assert log.count("wskit hub: lost Redis at") == 1, log
            assert log.count("wskit hub: reconnected to Redis at") == 1, log
    finally:
        redis.kill()


async def _restart_mid_chat(redis: RedisServer, a: Server, b: Server) -> None:
    room = new_room("outage")
    ann = await open_peer(a, ["wskit.chat.v2.json"])
    bob = await open_peer(b, ["wskit.chat.v2.msgpack"])
    epoch = (await joined(ann, room, "ann"))["epoch"]
    await joined(bob, room, "bob")
    await said(ann, room, "before")
    before = await message(bob, "before")

    sub = await open_peer(b, ["wskit.pubsub.v1.json"])
    await sub.send({"type": "subscribe", "topic": "outage.news"})
    await sub.recv_until("subscribed")

    redis.kill()
    # Without Redis a say is refused, not lost; the connections stay open.
    await said(bob, room, "during")
    while (reply := await bob.recv(timeout=5))["type"] != "error":
        pass
    assert reply["code"] == "unavailable"
    # A join is refused the same way on both backends, and the connection stays open.
    for peer in (ann, bob):
        await peer.send({"type": "join", "room": new_room("closed"), "nick": "late"})
        while (reply := await peer.recv(timeout=5))["type"] != "error":
            pass
        assert reply["code"] == "unavailable", reply
    # A pubsub publish reaches this server's subscribers, and the publisher is told it went no further.
    pub = await open_peer(b, ["wskit.pubsub.v1.msgpack"])
    await pub.send({"type": "publish", "topic": "outage.news", "data": "local"})
    assert await sub.recv() == {"type": "event", "topic": "outage.news", "data": "local"}
    assert (await pub.recv())["code"] == "unavailable"
    await pub.close()

    redis.start()
    # Delivery between the servers resumes once the hubs have reconnected (backoff: up to 5 s).
    deadline = time.monotonic() + 20
    delivered = False
    while not delivered and time.monotonic() < deadline:
        await said(ann, room, "after")
        try:
            got = await message(bob, "after", timeout=1)
            delivered = True
        except asyncio.TimeoutError:
            pass
    assert delivered, "no delivery between the servers after Redis came back"
    assert got["epoch"] != epoch  # Redis lost the room's history: a new epoch
    await said(bob, room, "back")
    await message(ann, "back")
    assert ann.ws.close_code is None and bob.ws.close_code is None  # nobody was disconnected
    # Presence was restored (each server put its members back, in the order it reconnected).
    carl = await open_peer(a, ["wskit.chat.v2.json"])
    answer = await joined(carl, room, "carl", since=before["offset"], epoch=epoch)
    assert sorted(answer["members"][:2]) == ["ann", "bob"] and answer["members"][2] == "carl"
    assert answer["history_lost"] is True and answer["epoch"] == got["epoch"]
    assert [m["text"] for m in answer["history"]][-1] == "back"
    for peer in (ann, bob, carl, sub):
        await peer.close()


def test_the_hub_url_is_checked_up_front():
    from wskit.options import server_settings
    from wskit.redis_hub import RedisAddress, channel_pattern

    address = RedisAddress.parse("redis://:secret@example.org:7000/3?prefix=app:")
    assert (address.host, address.port, address.db, address.password, address.prefix) == (
        "example.org", 7000, 3, "secret", "app:")
    assert "secret" not in address.url
    for bad, why in (("http://x", "expected redis://"), ("redis://x/db", "database number"),
                     ("redis://x/0?beat=1", "unknown option 'beat'"),
                     ("redis://x/0?heartbeat=5&presence_timeout=5", "heartbeat < presence_timeout")):
        with pytest.raises(ValueError, match=why):
            server_settings({"hub": bad})
    assert server_settings({"hub": "redis://127.0.0.1:6379/0"}).hub == "redis://127.0.0.1:6379/0"
    assert server_settings({}).hub is None

    from twisted.plugins.wskit_plugin import Options

    options = Options()
    options.parseOptions(["--hub", "redis://10.1.2.3:6380/1"])
    from_twistd = server_settings({k.replace("-", "_"): v for k, v in options.items()})
    assert from_twistd.hub == "redis://10.1.2.3:6380/1"
    assert channel_pattern("wskit:0:", "pubsub.ticks.*") == "wskit:0:pubsub.ticks.*"
    assert channel_pattern("wskit:0:", "pubsub.a[1].**") == r"wskit:0:pubsub.a\[1\].*"


def test_serve_without_redis_fails_with_one_line():
    import subprocess
    import sys

    from support import free_port, python_env

    for backend in ("twisted", "asyncio"):
        port = free_port()
        out = subprocess.run([sys.executable, "-m", "wskit", "serve", "--backend", backend, "--port", "0",
                              "--hub", f"redis://127.0.0.1:{port}/0"], capture_output=True, text=True,
                             env=python_env(), timeout=30)
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1].startswith(
            f"wskit: cannot connect to Redis at 127.0.0.1:{port}/0: "), out.stderr
        assert "Traceback" not in out.stderr


def test_workers_without_redis_fail_with_the_reason():
    import subprocess
    import sys

    from support import free_port, python_env

    for backend in ("twisted", "asyncio"):
        port = free_port()
        out = subprocess.run([sys.executable, "-m", "wskit", "serve", "--backend", backend, "--port", "0",
                              "--workers", "2", "--hub", f"redis://127.0.0.1:{port}/0"],
                             capture_output=True, text=True, env=python_env(), timeout=60)
        assert out.returncode == 1, out.stderr
        assert f"cannot connect to Redis at 127.0.0.1:{port}/0" in out.stderr, out.stderr
        assert "serving" not in out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize("backend", ["twisted", "asyncio"])
def test_two_workers_on_one_port_share_a_room_through_redis(redis, backend):
    from worker_support import workers_that_opened

    proc, port = serve(backend, "--workers", "2", "--hub", redis.url + OPTIONS, "--no-static",
                       "--ticker-interval", "0")
    with proc:
        server = Server(backend, port, proc)

        async def go():
            room = new_room("w")
            peers, nick = [], itertools.count()
            # Concurrent handshakes keep one worker busy while the next arrives, so both get members.
            for _ in range(12):
                batch = await asyncio.gather(*(open_peer(server, ["wskit.chat.v2.json"]) for _ in range(4)))
                for peer in batch:
                    await joined(peer, room, f"n{next(nick)}")
                peers += batch
                if set(workers_that_opened(proc)) == {1, 2}:
                    break
            assert set(workers_that_opened(proc)) == {1, 2}, "all connections went to one worker"
            await said(peers[0], room, "across workers")
            for peer in peers:  # members on both workers hear it, through Redis
                assert (await message(peer, "across workers"))["from"] == "n0"
            for peer in peers:
                await peer.close()

        run(go(), timeout=90)
        assert "Traceback" not in "\n".join(proc.lines)
