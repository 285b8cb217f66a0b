"""Helpers for the chat, pubsub and rpc tests: one server per backend per module, an independent client.

The pytest process never imports a wskit backend: it talks to ``wskit serve``
subprocesses with python-websockets and msgpack.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from support import BACKENDS, ServerProcess, serve
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


@dataclass
class Server:
    backend: str
    port: int
    proc: ServerProcess

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


def server_fixture(*args: str):
    """A module-scoped fixture running ``wskit serve ARGS`` once per backend."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def server(request):
        proc, port = serve(request.param, *args)
        with proc:
            yield Server(request.param, port, proc)

    return server


class Peer:
    """A websockets connection speaking one serializer: ``send(obj)`` / ``recv()`` objects."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.binary = bool(ws.subprotocol and ws.subprotocol.endswith(".msgpack"))

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def send(self, obj: Any) -> None:
        await self.ws.send(msgpack.packb(obj, use_bin_type=True) if self.binary else json.dumps(obj))

    async def recv(self, timeout: float = 5) -> Any:
        import asyncio

        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        if self.binary:
            assert isinstance(frame, bytes), f"expected a binary frame, got text {frame!r}"
            return msgpack.unpackb(frame, raw=False, strict_map_key=False)
        assert isinstance(frame, str), f"expected a text frame, got binary {frame!r}"
        return json.loads(frame)

    async def recv_until(self, kind: str, timeout: float = 5) -> Any:
        while True:
            msg = await self.recv(timeout)
            if isinstance(msg, dict) and msg.get("type") == kind:
                return msg

    async def close_code(self, timeout: float = 5) -> int | None:
        """Read until the server closes; the close code it sent."""
        import asyncio

        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.ws.close()


async def open_peer(server: Server, subprotocols: Sequence[str]) -> Peer:
    ws = await connect(server.url, subprotocols=list(subprotocols), open_timeout=10)
    return Peer(ws)
