"""The wskit echo client as an Autobahn client testee.

Speaks the fuzzingserver's client-testee protocol: ``/getCaseCount``, then
``/runCase?case=N&agent=A`` for every case (echoing with
:class:`wskit.clients.EchoClientHandler`), then ``/updateReports?agent=A``.
One process runs one backend, so this module runs as a subprocess::

    python -m autobahn_suite.testee_client --backend asyncio --url ws://127.0.0.1:9001

Connections go through wskit's own ``connect()`` (``ClientFactory``) on the
chosen backend with :func:`testee_client_settings`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import Any, Callable
from urllib.parse import quote

import txaio

from wskit.clients import EchoClientHandler
from wskit.handler import Handler
from wskit.runner import run
from wskit.settings import BACKENDS, ClientSettings, CompressionSettings, LimitSettings, TimeoutSettings

from .config import ECHO_MAX_MESSAGE_SIZE


def testee_client_settings() -> ClientSettings:
    """Client settings for the suite: wskit's defaults with the testee adjustments.

    * messages up to 16 MiB (case group 9 sends 16 MiB messages);
    * no keep-alive pings: every case records each frame the testee sends, and
      an unsolicited ping ends the 12.x/13.x cases early;
    * compress every message (threshold 0): kosoku's 12.x/13.x cases crash on
      an uncompressed echo of a compressed message (see README).
    """
    return ClientSettings(
        compression=CompressionSettings(threshold=0),
        limits=LimitSettings(max_message_size=ECHO_MAX_MESSAGE_SIZE),
        timeouts=TimeoutSettings(auto_ping_interval=0),
        user_agent="wskit",
    )


class CollectingHandler(Handler):
    """Keeps the text messages the server sends (the case count)."""

    def __init__(self, connection: Any, sink: list[str]):
        super().__init__(connection)
        self.sink = sink

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        self.sink.append(payload.decode("utf-8", "replace"))


async def drive(connect: Callable[..., Any], gather: Callable[..., Any], base_url: str, agent: str,
                parallel: int = 1, log: Any = sys.stderr) -> int:
    """Run every case the fuzzingserver offers; returns how many connections failed to open.

    ``connect(url, settings, handler_factory)`` returns an awaitable of the open
    protocol; ``gather(*coroutines)`` awaits them together on the backend.
    """
    base_url = base_url.rstrip("/")
    settings = testee_client_settings()
    agent_q = quote(agent)

    async def session(path: str, handler_factory: Any) -> bool:
        try:
            proto = await connect(f"{base_url}/{path}", settings, handler_factory)
        except Exception as exc:
            log.write(f"testee: {path}: connection failed: {exc}\n")
            return False
        await proto.is_closed
        return True

    texts: list[str] = []
    if not await session("getCaseCount", lambda conn: CollectingHandler(conn, texts)) or not texts:
        raise RuntimeError(f"no case count from {base_url}/getCaseCount")
    count = int(texts[0])
    log.write(f"testee: {agent}: {count} cases from {base_url}\n")
    log.flush()

    pending = iter(range(1, count + 1))
    failures = [0]
    started = time.monotonic()

    async def worker() -> None:
        for case in pending:
            ok = await session(f"runCase?case={case}&agent={agent_q}", EchoClientHandler)
            if not ok:
                failures[0] += 1

    await gather(*(worker() for _ in range(max(1, parallel))))
    await session(f"updateReports?agent={agent_q}", lambda conn: CollectingHandler(conn, []))
    log.write(f"testee: {agent}: ran {count} cases in {time.monotonic() - started:.1f}s\n")
    log.flush()
    return failures[0]


def run_testee(backend: str, url: str, agent: str, parallel: int) -> int:
    async def main(stopping: Any) -> int:
        adapter = importlib.import_module(f"wskit.{backend}")

        def gather(*coros: Any) -> Any:
            return txaio.gather([txaio.as_future(lambda c=c: c) for c in coros], consume_exceptions=False)

        return await drive(adapter.connect, gather, url, agent, parallel)

    return 1 if run(main, backend) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autobahn_suite.testee_client",
                                     description="wskit echo client driven by an Autobahn fuzzingserver")
    parser.add_argument("--backend", choices=BACKENDS, default="twisted")
    parser.add_argument("--url", default="ws://127.0.0.1:9001", help="the fuzzingserver's ws:// URL")
    parser.add_argument("--agent", help="agent name in the reports (default: wskit-BACKEND)")
    parser.add_argument("--parallel", type=int, default=1, metavar="N", help="cases run at once")
    args = parser.parse_args(argv)
    agent = args.agent or f"wskit-{args.backend}"
    return run_testee(args.backend, args.url, agent, args.parallel)


if __name__ == "__main__":
    raise SystemExit(main())
