"""Bad input at the door and the server-wide limits of chat, pubsub and rpc, against real servers.

Lone surrogates and absurd nesting are malformed messages: answered with the
documented error, charged to the error budget, and the connection (and the
room) keeps working. Empty chat rooms keep their history for the next joiner.
"""

from __future__ import annotations

import itertools

import msgpack
from app_support import Server, open_peer, server_fixture
from support import run

server = server_fixture("--history-size", "5", "--error-budget", "3")
capped = server_fixture("--max-rooms", "2", "--max-topics", "2")

_names = itertools.count()
DEEP = 100_000
LONE_SURROGATE_MSGPACK_STR = b"\xa3" + "\ud800".encode("utf-8", "surrogatepass")


def new_name(prefix: str = "room") -> str:
    return f"{prefix}{next(_names)}"


def deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def deep_msgpack(depth: int = DEEP) -> bytes:
    return b"\x91" * depth + b"\xc0"


def assert_no_tracebacks(server: Server) -> None:
    # Bad input is answered, never an internal error (1011 and a logged traceback).
    logged = "\n".join(server.proc.lines)
    assert "Traceback" not in logged and "code=1011" not in logged, logged[-3000:]


async def close_and_wait_for_the_server(server: Server, peer) -> None:
    """Close ``peer`` and wait until the server has logged (and so handled) that close."""
    import asyncio

    port = peer.ws.local_address[1]
    await peer.close()
    for _ in range(500):
        if any(f"close peer=tcp4:127.0.0.1:{port} " in line for line in list(server.proc.lines)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server did not log the close of port {port}")


async def joined(server: Server, subprotocol: str, room: str, nick: str):
    peer = await open_peer(server, [subprotocol])
    await peer.send({"type": "join", "room": room, "nick": nick})
    reply = await peer.recv()
    assert reply["type"] == "joined", reply
    return peer, reply


# -- chat history survives an empty room ------------------------------------------------


def test_a_v2_joiner_of_a_room_everyone_left_gets_its_history(server):
    async def go():
        room = new_name()
        ann, _ = await joined(server, "wskit.chat.v1.json", room, "ann")
        bob, _ = await joined(server, "wskit.chat.v2.msgpack", room, "bob")
        seen = []
        for peer, text in ((ann, "first"), (bob, "second")):
            await peer.send({"type": "say", "room": room, "text": text})
            seen.append(await bob.recv_until("message"))
        await ann.send({"type": "leave", "room": room})
        await ann.recv_until("left")
        await ann.close()
        await close_and_wait_for_the_server(server, bob)  # the last member goes by closing

        carl, reply = await joined(server, "wskit.chat.v2.json", room, "carl")
        assert reply["members"] == ["carl"]
        assert reply["history"] == seen and [m["text"] for m in reply["history"]] == ["first", "second"]
        await carl.send({"type": "say", "room": room, "text": "third"})
        assert (await carl.recv())["text"] == "third"
        await carl.close()

    run(go())
    assert_no_tracebacks(server)


# -- lone surrogates --------------------------------------------------------------------


def test_chat_say_with_a_lone_surrogate_is_bad_payload_and_the_room_keeps_working(server):
    async def go():
        room = new_name()
        ann, _ = await joined(server, "wskit.chat.v2.json", room, "ann")
        bob, _ = await joined(server, "wskit.chat.v1.json", room, "bob")
        await ann.recv_until("presence")
        for escape in ("\\ud800", "\\uDFFF"):
            await ann.ws.send('{"type":"say","room":"%s","text":"%s"}' % (room, escape))
            reply = await ann.recv()
            assert reply["type"] == "error" and reply["code"] == "bad-payload", reply
            assert "lone surrogate" in reply["message"]
        await ann.ws.send('{"type":"say","room":"%s","text":"ok \\ud83d\\ude00"}' % room)
        assert (await ann.recv())["text"] == "ok \U0001F600"
        assert (await bob.recv())["text"] == "ok \U0001F600"  # nobody got the bad one

        carl, reply = await joined(server, "wskit.chat.v2.msgpack", room, "carl")
        assert [m["text"] for m in reply["history"]] == ["ok \U0001F600"]
        # {"type": "say", "room": room, "text": <str with an encoded surrogate>}
        head = msgpack.packb({"type": "say", "room": room})
        await carl.ws.send(b"\x83" + head[1:] + msgpack.packb("text") + LONE_SURROGATE_MSGPACK_STR)
        reply = await carl.recv()
        assert reply["code"] == "bad-payload" and "not UTF-8" in reply["message"]
        dave, reply = await joined(server, "wskit.chat.v2.json", room, "dave")  # served, not closed with 1011
        assert reply["members"] == ["ann", "bob", "carl", "dave"]
        for peer in (ann, bob, carl, dave):
            await peer.close()

    run(go())
    assert_no_tracebacks(server)


def test_chat_nick_with_a_lone_surrogate_is_bad_payload_and_charged(server):
    async def go():
        room = new_name()
        peer = await open_peer(server, ["wskit.chat.v2.json"])
        for _ in range(3):  # --error-budget 3
            await peer.ws.send('{"type":"join","room":"%s","nick":"\\ud800"}' % room)
            assert (await peer.recv())["code"] == "bad-payload"
        other, reply = await joined(server, "wskit.chat.v2.json", room, "ann")
        assert reply["members"] == ["ann"]
        await peer.ws.send('{"type":"join","room":"%s","nick":"\\ud800"}' % room)
        assert await peer.close_code() == 1008
        await other.close()

    run(go())
    assert_no_tracebacks(server)


def test_pubsub_publish_with_a_lone_surrogate_is_bad_payload(server):
    async def go():
        topic = new_name("t")
        sub = await open_peer(server, ["wskit.pubsub.v1.msgpack"])
        await sub.send({"type": "subscribe", "topic": topic})
        await sub.recv()
        pub = await open_peer(server, ["wskit.pubsub.v1.json"])
        await pub.ws.send('{"type":"publish","topic":"%s","data":{"k\\udc00":1}}' % topic)
        reply = await pub.recv()
        assert reply["code"] == "bad-payload" and "lone surrogate" in reply["message"]
        await pub.ws.send('{"type":"publish","topic":"%s","data":"fine"}' % topic)
        assert (await sub.recv()) == {"type": "event", "topic": topic, "data": "fine"}
        await sub.close()
        await pub.close()

    run(go())
    assert_no_tracebacks(server)


def test_rpc_with_a_lone_surrogate_is_a_parse_error(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.ws.send('{"jsonrpc":"2.0","method":"echo","params":["\\ud800"],"id":1}')
        reply = await peer.recv()
        assert reply["error"]["code"] == -32700 and reply["id"] is None
        assert "lone surrogate" in reply["error"]["data"]
        await peer.send({"jsonrpc": "2.0", "method": "echo", "params": ["\U0001F600"], "id": 2})
        assert await peer.recv() == {"jsonrpc": "2.0", "result": "\U0001F600", "id": 2}
        await peer.close()

        peer = await open_peer(server, ["wskit.rpc.v1.msgpack"])
        # {"jsonrpc": "2.0", "method": "echo", "params": [<str with an encoded surrogate>], "id": 3}
        head = msgpack.packb({"jsonrpc": "2.0", "method": "echo", "id": 3})
        await peer.ws.send(b"\x84" + head[1:] + msgpack.packb("params") + b"\x91" + LONE_SURROGATE_MSGPACK_STR)
        reply = await peer.recv()
        assert reply["error"]["code"] == -32700 and reply["id"] is None
        await peer.close()

    run(go())
    assert_no_tracebacks(server)


# -- deep nesting ------------------------------------------------------------------------


def test_deeply_nested_chat_and_pubsub_messages_are_bad_payload(server):
    async def go():
        for name in ("wskit.chat.v2.json", "wskit.pubsub.v1.json", "wskit.chat.v1.msgpack",
                     "wskit.pubsub.v1.msgpack"):
            peer = await open_peer(server, [name])
            payloads = [deep_msgpack(), deep_msgpack(200)] if name.endswith("msgpack") else [
                deep_json(), '{"type":"publish","topic":"t","data":%s}' % deep_json(200)]
            for payload in payloads:
                await peer.ws.send(payload)
                reply = await peer.recv()
                assert reply["type"] == "error" and reply["code"] == "bad-payload", (name, reply)
                assert "nested deeper than 128 levels" in reply["message"]
            await peer.send({"type": "subscribe" if "pubsub" in name else "join", "topic": "fine",
                             "room": new_name(), "nick": "n"})
            assert (await peer.recv())["type"] in ("subscribed", "joined")
            await peer.ws.send(payloads[0])
            assert (await peer.recv())["code"] == "bad-payload"  # the third bad message: still in budget
            await peer.ws.send(payloads[0])
            assert await peer.close_code() == 1008  # the fourth is over --error-budget 3

    run(go())
    assert_no_tracebacks(server)


def test_deeply_nested_rpc_is_a_parse_error_and_the_deepest_allowed_echoes(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.ws.send(deep_json())
        reply = await peer.recv()
        assert reply["error"]["code"] == -32700 and reply["id"] is None
        allowed = '{"jsonrpc":"2.0","method":"echo","params":[%s],"id":1}' % deep_json(126)
        await peer.ws.send(allowed)  # 128 levels with the request object and params
        reply = await peer.recv()
        assert reply["id"] == 1 and "result" in reply
        await peer.close()

        peer = await open_peer(server, ["wskit.rpc.v1.msgpack"])
        await peer.ws.send(deep_msgpack())
        reply = await peer.recv()
        assert reply["error"]["code"] == -32700 and "nested deeper" in reply["error"]["data"]
        await peer.send({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 2})
        assert (await peer.recv())["result"] == 3
        await peer.close()

    run(go())
    assert_no_tracebacks(server)


# -- server-wide caps ----------------------------------------------------------------------


def test_max_rooms_and_max_topics_answer_too_many(capped):
    async def go():
        a, _ = await joined(capped, "wskit.chat.v2.json", "r1", "a")
        b, _ = await joined(capped, "wskit.chat.v1.json", "r2", "b")
        await a.send({"type": "join", "room": "r3", "nick": "a", "ref": 9})
        reply = await a.recv()
        assert reply["code"] == "too-many" and reply["ref"] == 9 and "limit of 2 rooms" in reply["message"]
        await b.send({"type": "join", "room": "r1", "nick": "b"})  # an existing room is fine
        assert (await b.recv_until("joined"))["members"] == ["a", "b"]

        p = await open_peer(capped, ["wskit.pubsub.v1.json"])
        for topic, answer in (("x", "subscribed"), ("y.*", "subscribed"), ("x", "subscribed"), ("z", "error")):
            await p.send({"type": "subscribe", "topic": topic})
            assert (await p.recv())["type"] == answer
        await p.send({"type": "unsubscribe", "topic": "x"})
        await p.recv()
        await p.send({"type": "subscribe", "topic": "z"})
        assert (await p.recv()) == {"type": "subscribed", "topic": "z"}
        for peer in (a, b, p):
            await peer.close()

    run(go())
    assert_no_tracebacks(capped)


def test_twistd_takes_the_room_options_too():
    from support import twistd

    proc, port = twistd("--max-rooms", "1", "--max-retained-rooms", "0", "--protocol", "wskit.chat.v2.json")
    with proc:
        server = Server("twistd", port, proc)

        async def go():
            ann, _ = await joined(server, "wskit.chat.v2.json", "one", "ann")
            await ann.send({"type": "say", "room": "one", "text": "hi"})
            await ann.recv()
            await ann.send({"type": "join", "room": "two", "nick": "ann"})
            reply = await ann.recv()
            assert reply["code"] == "too-many" and "limit of 1 rooms" in reply["message"]
            await close_and_wait_for_the_server(server, ann)
            # --max-retained-rooms 0: the history went with the last member
            bob, reply = await joined(server, "wskit.chat.v2.json", "one", "bob")
            assert reply["history"] == []
            await bob.close()

        run(go())
    assert_no_tracebacks(server)
