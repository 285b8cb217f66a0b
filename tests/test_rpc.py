"""wskit.rpc.v1.json / .msgpack against real servers on both backends, with python-websockets."""

from __future__ import annotations

import asyncio
import json

import msgpack
from app_support import open_peer, server_fixture
from support import run

server = server_fixture()

RPC_NAMES = ["wskit.rpc.v1.json", "wskit.rpc.v1.msgpack"]


def test_each_rpc_name_negotiated_when_offered_alone(server):
    async def go():
        for name in RPC_NAMES:
            peer = await open_peer(server, [name])
            assert peer.subprotocol == name
            await peer.close()

    run(go())


def test_server_prefers_msgpack_over_json_whatever_the_client_order(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json", "wskit.rpc.v1.msgpack"])
        assert peer.subprotocol == "wskit.rpc.v1.msgpack"
        await peer.close()

    run(go())


def test_discover_lists_methods_with_parameters(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.send({"jsonrpc": "2.0", "method": "rpc.discover", "id": 1})
        reply = await peer.recv()
        assert reply["id"] == 1 and reply["jsonrpc"] == "2.0"
        methods = {m["name"]: m for m in reply["result"]["methods"]}
        assert {"rpc.discover", "echo", "add", "time", "sleep"} <= set(methods)
        assert methods["echo"]["params"] == [{"name": "value", "required": False, "default": None}]
        await peer.close()

    run(go())


def test_unknown_method_is_32601(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.send({"jsonrpc": "2.0", "method": "no.such", "id": "x"})
        reply = await peer.recv()
        assert reply["error"]["code"] == -32601 and reply["id"] == "x"
        await peer.close()

    run(go())


def test_malformed_json_is_32700_with_null_id_and_the_connection_still_answers(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.ws.send('{"jsonrpc": "2.0", "method": ')
        reply = await peer.recv()
        assert reply["error"]["code"] == -32700 and reply["id"] is None
        await peer.send({"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 2})
        assert await peer.recv() == {"jsonrpc": "2.0", "result": 5, "id": 2}
        await peer.close()

    run(go())


def test_invalid_requests_and_bad_params(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        cases = [
            ({"jsonrpc": "1.0", "method": "echo", "id": 1}, -32600, 1),
            ({"jsonrpc": "2.0", "method": 5, "id": 2}, -32600, 2),
            ({"jsonrpc": "2.0", "method": "echo", "params": "x", "id": 3}, -32600, 3),
            ({"jsonrpc": "2.0", "method": "echo", "id": [1]}, -32600, None),
            ([], -32600, None),
            ({"jsonrpc": "2.0", "method": "echo", "params": [1, 2], "id": 4}, -32602, 4),
            ({"jsonrpc": "2.0", "method": "add", "params": ["a"], "id": 5}, -32602, 5),
        ]
        for request, code, reply_id in cases:
            await peer.send(request)
            reply = await peer.recv()
            assert reply["error"]["code"] == code, (request, reply)
            assert reply["id"] == reply_id
        await peer.close()

    run(go())


def test_batch_answered_as_a_list_without_notifications(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.send([
            {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1},
            {"jsonrpc": "2.0", "method": "echo", "params": ["n"]},  # notification: no answer
            {"jsonrpc": "2.0", "method": "sleep", "params": [0.02], "id": 2},
            {"jsonrpc": "2.0", "method": "nope", "id": 3},
            "not a request",
        ])
        reply = await peer.recv()
        assert isinstance(reply, list) and len(reply) == 4
        by_id = {r["id"]: r for r in reply if r["id"] is not None}
        assert by_id[1]["result"] == 3 and by_id[2]["result"] == 0.02
        assert by_id[3]["error"]["code"] == -32601
        assert [r["error"]["code"] for r in reply if r["id"] is None] == [-32600]
        # A batch of only notifications gets no answer at all: the next reply is for id 9.
        await peer.send([{"jsonrpc": "2.0", "method": "echo", "params": [1]}])
        await peer.send({"jsonrpc": "2.0", "method": "echo", "params": [9], "id": 9})
        assert (await peer.recv())["id"] == 9
        await peer.close()

    run(go())


def test_msgpack_rpc_is_answered_in_a_binary_frame(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.msgpack"])
        await peer.ws.send(msgpack.packb({"jsonrpc": "2.0", "method": "echo", "params": [b"\x00\xff"], "id": 7}))
        frame = await asyncio.wait_for(peer.ws.recv(), 5)
        assert isinstance(frame, bytes)
        assert msgpack.unpackb(frame) == {"jsonrpc": "2.0", "result": b"\x00\xff", "id": 7}
        await peer.ws.send(b"\xc1")  # never valid msgpack
        reply = msgpack.unpackb(await asyncio.wait_for(peer.ws.recv(), 5))
        assert reply["error"]["code"] == -32700 and reply["id"] is None
        await peer.close()

    run(go())


def test_binary_frame_on_json_rpc_closes_1003(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.ws.send(json.dumps({"jsonrpc": "2.0", "method": "echo", "id": 1}).encode())
        assert await peer.close_code() == 1003

        peer = await open_peer(server, ["wskit.rpc.v1.msgpack"])
        await peer.ws.send('{"jsonrpc": "2.0", "method": "echo", "id": 1}')
        assert await peer.close_code() == 1003

    run(go())


def test_error_budget_closes_with_1008(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        for _ in range(10):  # the default budget: each answered
            await peer.ws.send("not json")
            assert (await peer.recv())["error"]["code"] == -32700
        await peer.ws.send("not json")
        assert await peer.close_code() == 1008

    run(go())


def test_responses_arrive_as_calls_complete(server):
    async def go():
        peer = await open_peer(server, ["wskit.rpc.v1.json"])
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [0.3], "id": "slow"})
        await peer.send({"jsonrpc": "2.0", "method": "time", "id": "fast"})
        assert (await peer.recv())["id"] == "fast"
        assert (await peer.recv())["id"] == "slow"
        await peer.close()

    run(go())
