"""Prometheus metrics (`--metrics-port`) scraped from real servers and parsed with prometheus_client.

One process: counters are exact at every scrape (the server flushes before answering). Worker
processes: the supervisor serves the sum over every worker's multiprocess files, which each worker
updates every second, so those assertions poll.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from support import BACKENDS, ROOT, ServerProcess, encode_frame, python_env, raw_connect, run, serve, twistd
from worker_support import open_on_every_worker, worker_pids, workers_that_opened

pytestmark = pytest.mark.timeout(120)

METRICS_LINE = re.compile(r"wskit: metrics at (http://\S+/metrics)")
ECHO = "wskit.echo"


def metrics_url(proc: ServerProcess) -> str:
    for line in proc.lines:
        found = METRICS_LINE.search(line)
        if found:
            return found.group(1)
    raise AssertionError("no metrics line:\n" + "\n".join(proc.lines))


class Scrape:
    """One scrape, parsed: ``scrape["wskit_messages_total", {"direction": "in"}]`` sums the
    samples of that name whose labels include the given ones."""

    def __init__(self, url: str):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def __getitem__(self, key) -> float:
        name, labels = key if isinstance(key, tuple) else (key, {})
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def scrape_until(url: str, predicate, timeout: float = 15) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        scrape = Scrape(url)
        if predicate(scrape) or time.monotonic() > deadline:
            return scrape
        time.sleep(0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_process_counts_connections_messages_bytes_refusals_and_closes(backend):
    proc, port = serve(backend, "--metrics-port", "0", "--ticker-interval", "0")
    with proc:
        url = metrics_url(proc)
        ws_url = f"ws://127.0.0.1:{port}/ws"
        big = "compressible " * 400  # 5200 bytes that deflate shrinks a lot

        async def scenario():
            async with connect(ws_url, subprotocols=[ECHO]) as ws:
                for text in ("hello", big):
                    await ws.send(text)
                    assert await ws.recv() == text
                open_scrape = await asyncio.to_thread(Scrape, url)
            for subprotocols, origin in ((["bogus.v9"], None), ([ECHO], "https://elsewhere.example")):
                with pytest.raises(InvalidStatus):
                    await connect(ws_url, subprotocols=subprotocols, origin=origin)
            ws = await connect(ws_url, subprotocols=[ECHO])
            await ws.close(code=4000, reason="done here")
            async with connect(ws_url, subprotocols=["wskit.pubsub.v1.json"]) as ps:
                await ps.send(json.dumps({"type": "subscribe", "topic": "news"}))
                assert json.loads(await ps.recv())["type"] == "subscribed"
                await ps.send(json.dumps({"type": "publish", "topic": "news", "data": 1}))
                assert json.loads(await ps.recv())["type"] == "event"
            return open_scrape

        open_scrape = run(scenario(), timeout=60)
        assert open_scrape["wskit_connections", {"subprotocol": ECHO}] == 1

        s = scrape_until(url, lambda s: s["wskit_connections_closed_total"] == 3)
        echo = {"subprotocol": ECHO}
        assert s["wskit_connections", echo] == 0
        assert s["wskit_connections_opened_total", echo] == 2
        assert s["wskit_connections_closed_total", {**echo, "code": "1000"}] == 1
        assert s["wskit_connections_closed_total", {**echo, "code": "4000"}] == 1
        assert s["wskit_messages_total", {**echo, "direction": "in"}] == 2
        assert s["wskit_messages_total", {**echo, "direction": "out"}] == 2
        assert s["wskit_payload_bytes_total", {**echo, "direction": "in"}] == 5 + len(big)
        assert s["wskit_payload_bytes_total", {**echo, "direction": "out"}] == 5 + len(big)
        # deflate shows as fewer wire bytes than payload bytes (the handshake included)
        assert 0 < s["wskit_wire_bytes_total", {**echo, "direction": "out"}] < len(big) / 2
        assert 0 < s["wskit_wire_bytes_total", {**echo, "direction": "in"}] < len(big) / 2
        assert s["wskit_handshakes_refused_total", {"status": "400"}] == 1
        assert s["wskit_handshakes_refused_total", {"status": "403"}] == 1
        # refused handshakes' bytes are counted too, under subprotocol "none"
        assert s["wskit_wire_bytes_total", {"subprotocol": "none", "direction": "in"}] > 0
        assert s["wskit_messages_total", {"subprotocol": "wskit.pubsub.v1.json", "direction": "in"}] == 2
        assert s["wskit_hub_delivery_seconds_count"] == 1
        assert 0 <= s["wskit_hub_delivery_seconds_sum"] < 0.5
        assert s["wskit_hub_reconnects_total"] == 0
        assert s["wskit_slow_consumer_drops_total"] == 0

        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
        assert info.value.code == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_consumer_drop_is_counted(backend):
    proc, port = serve(backend, "--metrics-port", "0", "--ticker-interval", "0", "--no-compress",
                       "--max-buffered-bytes", str(64 * 1024))
    with proc:
        sock, head = raw_connect(port, headers={"Sec-WebSocket-Protocol": "wskit.rpc.v1.json"})
        assert b" 101 " in head
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["x" * 60000], "id": 1}).encode()
        sock.settimeout(5)
        try:
            for _ in range(400):  # never read a reply
                sock.sendall(encode_frame(0x1, request))
        except OSError:
            pass
        proc.wait_for_log("too slow a consumer", timeout=30)
        sock.close()
        assert scrape_until(metrics_url(proc), lambda s: s["wskit_slow_consumer_drops_total"] == 1)[
            "wskit_slow_consumer_drops_total"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_add_up(backend):
    proc, port = serve(backend, "--workers", "2", "--metrics-port", "0", "--ticker-interval", "0")
    with proc:
        url = metrics_url(proc)

        echo = {"subprotocol": ECHO}

        async def scenario():
            conns = await open_on_every_worker(port, proc)
            for ws in conns:
                await ws.send("hi")
                assert await ws.recv() == "hi"
            total = len(conns)
            per_worker = Counter(workers_that_opened(proc))
            assert per_worker[1] > 0 and per_worker[2] > 0 and sum(per_worker.values()) == total
            s = await asyncio.to_thread(
                scrape_until, url, lambda s: s["wskit_messages_total", {**echo, "direction": "out"}] == total)
            # one sum over both workers' connections, whichever worker served them
            assert s["wskit_connections", echo] == total
            assert s["wskit_connections_opened_total", echo] == total
            assert s["wskit_messages_total", {**echo, "direction": "in"}] == total
            assert s["wskit_messages_total", {**echo, "direction": "out"}] == total
            assert s["wskit_workers"] == 2

            # a worker that dies takes its connections out of the gauge; its counters stay in the totals
            os.kill(worker_pids(proc)[1], signal.SIGKILL)
            s = await asyncio.to_thread(
                scrape_until, url, lambda s: s["wskit_connections", echo] == per_worker[2]
                and s["wskit_worker_restarts_total"] == 1)
            assert s["wskit_connections", echo] == per_worker[2]
            assert s["wskit_worker_restarts_total"] == 1
            assert s["wskit_connections_opened_total", echo] == total
            await asyncio.gather(*(ws.close() for ws in conns))
            s = await asyncio.to_thread(
                scrape_until, url, lambda s: s["wskit_connections_closed_total", {**echo, "code": "1000"}]
                == per_worker[2])
            assert s["wskit_connections", echo] == 0
            assert s["wskit_connections_closed_total", {**echo, "code": "1000"}] == per_worker[2]

        run(scenario(), timeout=90)


def test_twistd_serves_metrics():
    proc, port = twistd("--metrics-port", "0", "--ticker-interval", "0")
    with proc:
        url = metrics_url(proc)

        async def talk():
            async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=[ECHO]) as ws:
                await ws.send("x")
                await ws.recv()

        run(talk())
        s = scrape_until(url, lambda s: s["wskit_connections_closed_total"] == 1)
        assert s["wskit_messages_total", {"subprotocol": ECHO, "direction": "in"}] == 1


def test_metrics_without_prometheus_client_is_one_line():
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from wskit.cli import main\nsys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "serve", "--metrics-port", "0"], capture_output=True,
                            text=True, timeout=30, env=python_env(), cwd=str(ROOT))
    assert result.returncode == 2
    assert result.stderr.strip() == "wskit: metrics need prometheus-client: pip install 'wskit[metrics]'"


def test_recorder_flushes_traffic_into_counters():
    from wskit.metrics import PrometheusRecorder

    recorder = PrometheusRecorder()
    traffic = recorder.traffic(ECHO)
    assert recorder.traffic(ECHO) is traffic  # one per subprotocol, shared by its connections
    traffic.incomingWebSocketMessages += 3  # what Autobahn adds to a connection's trafficStats
    traffic.incomingOctetsAppLevel += 30
    recorder.connection_opened(ECHO)
    recorder.connection_closed(ECHO, None)
    recorder.handshake_refused(503)
    body, content_type = recorder.exposition()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("wskit_messages_total", (("direction", "in"), ("subprotocol", ECHO)))] == 3
    assert samples[("wskit_payload_bytes_total", (("direction", "in"), ("subprotocol", ECHO)))] == 30
    assert samples[("wskit_connections_closed_total", (("code", "1005"), ("subprotocol", ECHO)))] == 1
    assert samples[("wskit_handshakes_refused_total", (("status", "503"),))] == 1
    assert samples[("wskit_connections", (("subprotocol", ECHO),))] == 0
    assert traffic.incomingWebSocketMessages == 0  # moved, not copied: the next flush adds only what is new


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_port_in_use_is_one_line(workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "wskit", "serve", "--port", "0", "--workers", workers,
                                 "--metrics-port", str(port)], capture_output=True, text=True, timeout=60,
                                env=python_env(), cwd=str(ROOT))
    lines = [line for line in result.stderr.splitlines() if line.startswith("wskit: ")]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert lines == [f"wskit: cannot serve metrics on 127.0.0.1:{port}: address already in use "
                     "(pick another --metrics-port, or stop what uses it)"], result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_connections_refusals_are_counted_as_503(backend):
    proc, port = serve(backend, "--metrics-port", "0", "--ticker-interval", "0", "--max-connections", "1")
    with proc:
        url = f"ws://127.0.0.1:{port}/ws"

        async def scenario():
            async with connect(url, subprotocols=[ECHO]):
                with pytest.raises(InvalidStatus) as refused:
                    await connect(url, subprotocols=[ECHO])
                assert refused.value.response.status_code == 503

        run(scenario())
        s = Scrape(metrics_url(proc))
        assert s["wskit_handshakes_refused_total", {"status": "503"}] == 1
        assert s["wskit_connections_opened_total"] == 1
