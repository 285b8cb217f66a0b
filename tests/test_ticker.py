"""The demo ticker: pure tick generation, real timers on both backends, and the server wiring."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
from support import BACKENDS, ROOT, python_env, run, serve, twistd
from websockets.asyncio.client import connect

from wskit.app import WebSocketApp
from wskit.settings import ServerSettings
from wskit.protocols.ticker import SYMBOLS, TICKER_TOPIC, DemoTicker, demo_ticker_for


def test_each_tick_moves_every_symbol_once():
    ticker = DemoTicker(lambda topic, data: None, seed=7)
    first = ticker.next_events()
    second = ticker.next_events()
    assert [e["symbol"] for e in first] == [s for s, _ in SYMBOLS]
    assert {e["seq"] for e in first} == {1} and {e["seq"] for e in second} == {2}
    for before, after in zip(first, second):
        assert after["price"] > 0
        assert after["change"] == pytest.approx(after["price"] - before["price"], abs=0.011)
        assert set(after) == {"symbol", "price", "change", "time", "seq"}
    # Every event is plain JSON (it goes to json and msgpack subscribers alike).
    assert json.loads(json.dumps(second)) == second


def test_same_seed_same_walk():
    a, b = DemoTicker(print, seed=3), DemoTicker(print, seed=3)
    assert [e["price"] for e in a.next_events()] == [e["price"] for e in b.next_events()]


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        DemoTicker(print, interval=0)


def test_app_builds_a_ticker_only_when_asked_and_pubsub_exists():
    assert demo_ticker_for(WebSocketApp(ServerSettings(ticker_interval=0))) is None
    app = WebSocketApp(ServerSettings(ticker_interval=0.5))
    ticker = demo_ticker_for(app)
    assert ticker is not None and ticker.interval == 0.5 and ticker.topic == TICKER_TOPIC
    # Nobody subscribed yet: ticks are skipped.
    assert ticker.has_subscribers is not None and not ticker.has_subscribers(TICKER_TOPIC)
    app.services.pop("pubsub")
    assert demo_ticker_for(app) is None


# Real timers through txaio on each backend: idle ticks publish nothing, stop() stops.
TIMER_SCRIPT = r"""
import sys
backend = sys.argv[1]
import txaio
import wskit
from wskit.protocols.ticker import DemoTicker

published, listening = [], {"on": False}
ticker = DemoTicker(lambda topic, data: published.append(data), interval=0.01,
                    has_subscribers=lambda topic: listening["on"])
ticks = {"n": 0}
original = ticker._tick
def counting_tick():
    ticks["n"] += 1
    original()
ticker._tick = counting_tick

def report():
    print(ticks["n"], len(published), flush=True)

def script(later):
    ticker.start()
    later(0.3, lambda: (report(), listening.update(on=True)))
    later(0.6, lambda: (report(), ticker.stop()))
    later(0.9, report)

async def main(stopping):
    script(txaio.call_later)
    await txaio.sleep(1.0)

wskit.run(main, backend)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_ticker_timers_on_each_backend(backend):
    done = subprocess.run([sys.executable, "-c", TIMER_SCRIPT, backend], capture_output=True, timeout=30,
                          env=python_env(), cwd=str(ROOT))
    assert done.returncode == 0, done.stderr.decode()
    (idle_ticks, idle_published), (live_ticks, live_published), (stopped_ticks, stopped_published) = [
        tuple(map(int, line.split())) for line in done.stdout.decode().split("\n") if line.strip()
    ]
    assert idle_ticks >= 5 and idle_published == 0  # timer ran, nobody listening: nothing built or sent
    assert live_published > 0 and live_published % len(SYMBOLS) == 0
    assert (stopped_ticks, stopped_published) == (live_ticks, live_published)  # stop() cancelled the timer


async def receive_ticks(port: int, count: int, timeout: float = 10) -> list[dict]:
    async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["wskit.pubsub.v1.json"], proxy=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topic": TICKER_TOPIC}))
        assert json.loads(await ws.recv()) == {"type": "subscribed", "topic": TICKER_TOPIC}
        events = []
        async with asyncio.timeout(timeout):
            while len(events) < count:
                msg = json.loads(await ws.recv())
                assert msg["type"] == "event" and msg["topic"] == TICKER_TOPIC
                events.append(msg["data"])
        return events


@pytest.mark.parametrize("kind", [*BACKENDS, "twistd"])
def test_server_publishes_ticks_and_stops_cleanly(kind):
    args = ("--ticker-interval", "0.1")
    proc, port = twistd(*args) if kind == "twistd" else serve(kind, *args)
    with proc:
        started = time.monotonic()
        events = run(receive_ticks(port, 3 * len(SYMBOLS)))
        elapsed = time.monotonic() - started
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        assert {e["symbol"] for e in events} == {s for s, _ in SYMBOLS}
        assert elapsed < 5
        proc.proc.terminate()
        code = proc.wait_exit(10)  # and every line it wrote read
    log = "\n".join(proc.lines)
    if kind == "twistd":
        # twistd shuts down, then re-raises the signal so its exit status shows it.
        assert code == -signal.SIGTERM and "Server Shut Down." in log
    else:
        assert code == 0
    assert "Traceback" not in log and "Unhandled" not in log


@pytest.mark.parametrize("backend", BACKENDS)
def test_ticker_interval_zero_disables_it(backend):
    proc, port = serve(backend, "--ticker-interval", "0")
    with proc:
        # An absence can only be observed for a while: 1 s is a whole default interval.
        with pytest.raises(TimeoutError):
            run(receive_ticks(port, 1, timeout=1.0))
