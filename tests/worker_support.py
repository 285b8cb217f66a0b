"""Helpers for tests of worker processes: which worker wrote a log line, spreading connections."""

from __future__ import annotations

import asyncio
import re
import time

from websockets.asyncio.client import connect

from support import ServerProcess

READY = re.compile(r"\[w(\d+)\].*wskit: worker (\d+) ready pid=(\d+)")
OPEN = re.compile(r"\[w(\d+)\].*wskit: open ")


def worker_pids(proc: ServerProcess) -> dict[int, int]:
    """The latest pid each worker reported ready with."""
    pids = {}
    for line in list(proc.lines):
        found = READY.search(line)
        if found:
            assert found.group(1) == found.group(2), line  # the tag names the worker that wrote it
            pids[int(found.group(2))] = int(found.group(3))
    return pids


def workers_that_opened(proc: ServerProcess) -> list[int]:
    return [int(m.group(1)) for line in list(proc.lines) if (m := OPEN.search(line))]


def wait_until(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def open_on_every_worker(port: int, proc: ServerProcess, workers: int = 2, batch: int = 12,
                               rounds: int = 8) -> list:
    """Open connections in concurrent batches (kept open) until every worker has logged an open.

    The kernel hands a connection to whichever worker accepts first; concurrent handshakes keep
    one worker busy while the next connection arrives, so the others get theirs.
    """
    url = f"ws://127.0.0.1:{port}/ws"
    conns: list = []
    for _ in range(rounds):
        conns += await asyncio.gather(*(connect(url, subprotocols=["wskit.echo"]) for _ in range(batch)))
        deadline = time.monotonic() + 10
        while len(workers_that_opened(proc)) < len(conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if set(workers_that_opened(proc)) == set(range(1, workers + 1)):
            return conns
    raise AssertionError(f"{len(conns)} connections all went to workers {set(workers_that_opened(proc))}")


async def echo_once(port: int, text: str = "ping") -> str:
    async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["wskit.echo"], open_timeout=10) as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 10)
