"""Runs ``wskit.connect(..., token=)`` against a server with authentication on; prints one JSON object.

Usage: python tests/auth_client_script.py BACKEND URL TOKEN

One process = one backend: the same coroutine runs under ``wskit.run`` on
either event loop.
"""

from __future__ import annotations

import json
import sys

import wskit
from wskit import ChatClient


async def scenario(url: str, token: str, backend: str) -> dict:
    out: dict = {}
    async with wskit.connect(url, subprotocols=["wskit.chat.v2.json"], backend=backend, token=token) as conn:
        chat = ChatClient(conn)
        joined = await chat.join("room-api", "someone-else")
        out["joined"] = [joined["type"], joined["nick"]]
        try:
            await chat.join("lobby", "someone-else")
            out["forbidden"] = "joined"
        except wskit.RequestError as exc:
            out["forbidden"] = exc.code
    try:
        await wskit.connect(url, subprotocols=["wskit.chat.v2.json"], backend=backend)
        out["no_token"] = "opened"
    except wskit.HandshakeError as exc:
        out["no_token"] = [exc.status, exc.reason]
    return out


def main() -> None:
    backend, url, token = sys.argv[1:4]

    async def run(stopping) -> dict:
        return await scenario(url, token, backend)

    sys.stdout.write(json.dumps(wskit.run(run, backend)) + "\n")


if __name__ == "__main__":
    main()
