"""Runs wskit's client against a list of URLs on one backend; prints one JSON object.

Usage: python tests/deflate_client_script.py BACKEND PROFILE:URL [PROFILE:URL ...]

PROFILE picks the client's compression settings (see PROFILES). For each URL the
client connects; once open it sends two messages that deflate well (one repeating
400 bytes apart, beyond a 256-byte window), waits for both echoes and closes.
Reports, per URL, the negotiated compression and the echoes, or the handshake
error. One process = one backend (txaio's framework is chosen per process).
"""

from __future__ import annotations

import json
import os
import sys

import wskit
from wskit.settings import ClientSettings, CompressionSettings

PROFILES = {
    # wskit's client defaults: no server window requested.
    "default": CompressionSettings(server_max_window_bits=15),
    # Asks the server for a 10-bit window and no context takeover.
    "strict": CompressionSettings(server_max_window_bits=10, server_no_context_takeover=True),
}

_BLOCK = os.urandom(400)
MESSAGES = ["compress me " * 300, _BLOCK * 6 + b"z" * 500]


async def one(url: str, profile: str, backend: str) -> dict:
    settings = ClientSettings(compression=PROFILES[profile])
    try:
        conn = await wskit.connect(url, backend=backend, settings=settings)
    except wskit.HandshakeError as exc:
        return {"error": exc.reason, "status": exc.status}
    out: dict = {"compression": conn.compression}
    try:
        echoes = []
        for message in MESSAGES:
            await conn.send_raw(message)
            echoes.append(await conn.recv())
        out["echoes_ok"] = echoes == MESSAGES
        await conn.close()
    except Exception as exc:  # e.g. the server could not inflate what we sent and hung up
        out["failure"] = f"{type(exc).__name__}: {exc}"
    out["close_code"] = conn.close_code
    return out


async def scenario(targets: list[str], backend: str) -> dict:
    results = {}
    for target in targets:
        profile, url = target.split(":", 1)
        results[url] = await one(url, profile, backend)
    return results


def main() -> None:
    backend, targets = sys.argv[1], sys.argv[2:]
    if backend == "asyncio":
        import asyncio

        results = asyncio.run(asyncio.wait_for(scenario(targets, backend), 60))
    else:
        from twisted.internet import defer, task

        results = {}

        async def run(reactor):
            results.update(await scenario(targets, backend))

        try:
            task.react(lambda reactor: defer.ensureDeferred(run(reactor)).addTimeout(60, reactor))
        except SystemExit as exc:
            if exc.code:
                raise
    print(json.dumps(results))


if __name__ == "__main__":
    main()
