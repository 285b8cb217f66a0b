"""Clients that survive a server restart: ``async for conn in wskit.connect(...)``, ChatClient and
PubSubClient re-joining and re-subscribing, giving up, refusals, and the bounded receive queue.

Each client backend runs tests/reconnect_script.py in its own process against a ``wskit serve``
of the same backend; the test restarts that server on the same port (SIGTERM: every connection
is closed with 1001 going away) when the script says it is ready.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from support import BACKENDS, ROOT, free_port, python_env, serve
from wskit.settings import ClientSettings, ReconnectSettings, SettingsError

pytestmark = pytest.mark.timeout(120)


class Script:
    """tests/reconnect_script.py in a subprocess; its JSON lines arrive on a queue."""

    def __init__(self, backend: str, scenario: str, *urls: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "reconnect_script.py"), backend, scenario, *urls],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env(), cwd=str(ROOT),
        )
        self.lines: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr), daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout: float = 30) -> dict:
        try:
            item = self.lines.get(timeout=timeout)
        except queue.Empty:
            item = None
        if item is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the client script said nothing more; stderr:\n" + "".join(self.errors)[-4000:])
        return item

    def expect_event(self, name: str, timeout: float = 30) -> None:
        item = self.next(timeout)
        assert item.get("event") == name, item

    def result(self, timeout: float = 60) -> dict:
        item = self.next(timeout)
        assert "result" in item, item
        assert self.proc.wait(10) == 0, "".join(self.errors)[-4000:]
        return item["result"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_clients_carry_on_across_a_server_restart(backend):
    server, port = serve(backend, "--ticker-interval", "0")
    url = f"ws://127.0.0.1:{port}/ws"
    script = Script(backend, "restart", url)
    try:
        script.expect_event("ready")
        server.stop()  # SIGTERM: the server closes every connection with 1001
        server, _ = serve(backend, "--ticker-interval", "0", port=port)
        out = script.result()
    finally:
        script.kill()
        server.stop()
    # (a) the loop got a second connection and echoed on it; the first ended with 1001.
    assert out["echo"] == ["hello from connection 1", 1001, "hello from connection 2"]
    # (b) ann re-joined her room (a "joined" message, the new server's empty history) and hears bob.
    pid_room = out["chat_rejoined"][0]
    assert out["chat_joined"] == ["ann"]
    assert out["chat_rejoined"] == [pid_room, "ann", ["ann"], []]
    assert out["chat_reconnects"] == 1 and out["chat_rooms"] == {pid_room: "ann"}
    assert out["chat_after"] == ["bob", "after the restart"]
    # (c) the pattern subscription was renewed and an event published after the restart arrived.
    assert out["pubsub_renewed"] == ["subscribed"]
    assert len(out["pubsub_topics"]) == 1 and out["pubsub_topics"][0].endswith(".*")
    assert out["pubsub_after"] == ["x", {"n": 1}]
    # close() stops the reconnecting: iteration drains what had arrived and ends; recv() raises.
    assert out["chat_after_close"] == ["ended", 1000]


class Interactive:
    """``wskit connect --reconnect`` with a pipe for stdin; its output lines are collected as they come."""

    def __init__(self, backend: str, url: str, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wskit", "connect", url, "--backend", backend, "--reconnect",
             "--reconnect-delay", "0.2", "--reconnect-max-delay", "0.5", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=python_env(), cwd=str(ROOT),
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr), daemon=True).start()

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, text: str, count: int = 1, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in list(self.lines) if text in line]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                break
            if self.proc.poll() is not None:  # exited: its last lines may still be on their way
                deadline = min(deadline, time.monotonic() + 0.5)
            time.sleep(0.02)
        raise AssertionError(f"{count} x {text!r} not printed:\n{''.join(self.lines)}\n{''.join(self.errors)}")

    def finish(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_wskit_connect_reconnect_keeps_the_session_across_a_restart(backend):
    server, port = serve(backend, "--ticker-interval", "0")
    client = Interactive(backend, f"ws://127.0.0.1:{port}/ws", "-s", "wskit.echo")
    try:
        client.wait_for("connected: subprotocol=wskit.echo")
        client.type("before")
        client.wait_for("< before")
        server.stop()
        client.wait_for("disconnected: code=1001 reason=server shutting down; reconnecting in")
        client.type("while away")  # refused, not queued
        client.wait_for("! not sent (disconnected, reconnecting): while away")
        client.wait_for("connect failed: connection refused by ws://127.0.0.1:")  # still down: retried
        server, _ = serve(backend, "--ticker-interval", "0", port=port)
        client.wait_for("connected: subprotocol=wskit.echo", count=2)
        client.type("after")
        client.wait_for("< after")
        client.proc.stdin.close()  # end of input: close after --linger, as without --reconnect
        assert client.finish() == 0, "".join(client.errors)
    finally:
        client.kill()
        server.stop()
    out = "".join(client.lines)
    assert "< while away" not in out
    assert out.rstrip().endswith("closed: code=1000 reason=")
    assert "Traceback" not in "".join(client.errors)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wskit_connect_reconnect_ends_on_sigterm_while_waiting_and_gives_up_with_one_line(backend):
    server, port = serve(backend, "--ticker-interval", "0")
    url = f"ws://127.0.0.1:{port}/ws"
    waiting = Interactive(backend, url)
    giving_up = Interactive(backend, url, "--reconnect-attempts", "2")
    try:
        waiting.wait_for("connected:")
        giving_up.wait_for("connected:")
        server.stop()  # for good
        waiting.wait_for("connect failed: connection refused")
        waiting.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert waiting.finish() == 0, "".join(waiting.errors)
        assert time.monotonic() - started < 5
        assert giving_up.finish() == 1
    finally:
        waiting.kill()
        giving_up.kill()
        server.stop()
    assert "Traceback" not in "".join(waiting.errors)
    # Two refused attempts after the loss, then one error line, as for a refused first connection.
    assert len([line for line in giving_up.lines if line.startswith("connect failed:")]) == 1
    errors = [line for line in giving_up.errors if line.startswith("wskit: ")]
    assert len(errors) == 1 and "connection refused by" in errors[0], "".join(giving_up.errors)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iteration_gives_up_with_the_last_error(backend):
    server, port = serve(backend, "--ticker-interval", "0")
    script = Script(backend, "give_up", f"ws://127.0.0.1:{free_port()}/ws", f"ws://127.0.0.1:{port}/ws")
    try:
        script.expect_event("ready")
        server.stop()  # and nothing comes back
        out = script.result()
    finally:
        script.kill()
        server.stop()
    refused = "ConnectionRefusedError"
    # max_attempts=4, delays 0.1, 0.2, 0.4 (no jitter): four attempts, then the refusal is raised.
    tried = out["max_attempts"]
    assert (tried["raised"], tried["waits"], tried["attempts"]) == (refused, [0.1, 0.2, 0.4], 4)
    assert tried["connections"] == 0
    assert 0.7 <= tried["elapsed"] < 5
    # give_up_after=1.0 with 0.2 s between attempts: no attempt starts after 1 s. (A refused
    # attempt takes ~0.3 s on Twisted: HostnameEndpoint reports it at its next attempt tick.)
    timed = out["give_up_after"]
    assert timed["raised"] == refused and set(timed["waits"]) == {0.2}
    assert 2 <= timed["attempts"] <= 6 and 0.6 <= timed["elapsed"] < 2
    # A lost connection (1001) is retried from a first wait; three refused attempts later it gives up.
    lost = out["lost"]
    assert (lost["raised"], lost["waits"], lost["attempts"]) == (refused, [0.1, 0.2, 0.4], 3)
    assert lost["connections"] == 1
    assert 0.7 <= lost["elapsed"] < 5
    assert out["kept"] == [refused, 0]  # a kept client's reader gets the error it gave up on


@pytest.mark.parametrize("backend", BACKENDS)
def test_4xx_is_raised_at_once_and_503_is_retried(backend):
    server, port = serve(backend, "--ticker-interval", "0", "--max-connections", "1")
    script = Script(backend, "refusals", f"ws://127.0.0.1:{port}/ws")
    try:
        out = script.result()
    finally:
        script.kill()
        server.stop()
    status, waits, attempts, quick = out["refused_400"]
    assert (status, waits, attempts, quick) == (400, [], 1, True)
    assert out["retried_503"] == [[503], "in"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_untrusted_certificate_is_raised_at_once(backend, tmp_path):
    from tlscert import make_self_signed

    cert, key = make_self_signed(tmp_path)
    server, port = serve("twisted", "--ticker-interval", "0", "--tls-cert", cert, "--tls-key", key)
    script = Script(backend, "untrusted", f"wss://127.0.0.1:{port}/ws")
    try:
        out = script.result()
    finally:
        script.kill()
        server.stop()
    assert out["untrusted"] == [True, [], 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_receive_queue_stays_within_max_queue_under_a_flood(backend):
    server, port = serve(backend, "--ticker-interval", "0", "--no-compress")
    script = Script(backend, "flood", f"ws://127.0.0.1:{port}/ws")
    try:
        out = script.result(timeout=90)
    finally:
        script.kill()
        server.stop()
    # 3000 events arrive while the subscriber reads nothing: it stops reading at max_queue=8 ...
    assert out["paused_while_flooded"] is True
    assert out["queued_while_flooded"] == 8
    assert out["peak"] == 8
    # ... and reads again as it drains: every event arrives, in order, none dropped.
    assert out["received_in_order"] is True
    assert out["paused_after"] is False
    assert "too slow a consumer" not in "\n".join(server.lines)


def test_reconnect_defaults_follow_python_websockets():
    policy = ClientSettings().reconnect
    # A first wait of 0-5 s (RFC 6455 7.2.3), growing by the golden ratio up to 90 s; retry forever.
    assert [round(policy.delay(n, rand=0.0), 2) for n in range(3)] == [5.0, 8.09, 13.09]
    assert policy.delay(0, rand=0.999) < 0.01 and policy.delay(50, rand=0.0) == 90.0
    assert (policy.max_attempts, policy.give_up_after) == (0, 0.0)
    assert policy.retry_statuses == (500, 502, 503, 504)
    assert policy.retry_close_codes == (1001, 1006, 1011, 1012, 1013, 1014)


@pytest.mark.parametrize("changes", [{"initial_delay": -1}, {"max_delay": -1}, {"factor": 0.5}, {"jitter": 1.5},
                                     {"max_attempts": -1}, {"give_up_after": -2}])
def test_bad_reconnect_settings_are_refused(changes):
    with pytest.raises(SettingsError):
        ClientSettings(reconnect=ReconnectSettings(**changes)).validate()
