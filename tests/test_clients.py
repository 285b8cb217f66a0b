"""The awaitable wskit clients (wskit.connect, ChatClient, PubSubClient, RPCClient) on both backends.

One process = one backend, so each client backend runs tests/client_script.py in
its own subprocess against a server of each backend and reports JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from app_support import server_fixture
from support import BACKENDS, ROOT, python_env

server = server_fixture()


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_awaitable_clients(server, client_backend):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "client_script.py"), client_backend, server.url],
        capture_output=True, text=True, timeout=90, env=python_env(), cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    # Raw echo: str as text, bytes as binary; async with closes with 1000.
    assert out["echo"] == ["wskit.echo", "hello", "0001"]
    assert out["echo_closed"] == [False, 1000]
    # RPC over msgpack: results, typed errors, named params, coroutine methods, discover.
    assert out["rpc_subprotocol"] == "wskit.rpc.v1.msgpack"
    assert out["rpc_add"] == 6.5
    assert out["rpc_echo_named"] == {"k": [1, 2]}
    assert out["rpc_unknown"] == [-32601, "Method not found"]
    assert out["rpc_bad_params"] == -32602
    assert out["rpc_sleep"] == 0.01
    assert out["rpc_discover"] == ["add", "echo", "rpc.discover", "sleep", "time"]
    # Chat: v2 json and v1 msgpack clients in one room.
    assert out["chat_joined"] == ["joined", ["ann"], []]
    assert out["chat_joined_v1"] == [["ann", "bob"], False]
    assert out["chat_presence"] == {"type": "presence", "room": out["chat_room"], "nick": "bob", "event": "join"}
    assert out["chat_v2_got"] == ["bob", "hi ann", True, True]
    assert out["chat_v1_own"] == ["from", "room", "text", "type"]
    assert out["chat_error"] == "already-joined"
    assert out["chat_left"] == "left"
    assert out["chat_presence_leave"] == "leave"
    assert out["chat_recovered"] == [["missed 1", "missed 2"], False, True]
    # Pubsub: pattern subscription read with async for.
    assert out["pubsub_subscribed"] == "subscribed"
    assert out["pubsub_events"] == [["ticks.t0", 0], ["ticks.t1", 1], ["ticks.t2", 2]]
    # Iteration drains what arrived and ends at a normal close; sending after close raises.
    assert out["iter_after_close"] == [["last"], 1000]
    assert out["send_after_close"] == 1000
    assert out["refused"] == 400
    if client_backend == "twisted":
        assert out["inline_callbacks"] == ["wskit.rpc.v1.json", 42, 1000]
