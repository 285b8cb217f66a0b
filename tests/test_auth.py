"""Authentication, permissions, server-only topics and abuse limits over real sockets, on both backends.

``wskit serve`` runs as a subprocess (one backend per process); python-websockets
is the independent client. The fine-grained matrices live in the in-memory tier
(tests/memory/auth_cases.py); this module shows the behaviour end to end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time

import pytest
from app_support import Peer, Server, server_fixture
from support import BACKENDS, ROOT, TWISTD, python_env, run, serve, twistd
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wskit.auth import issue_token

pytestmark = pytest.mark.timeout(120)

SECRET = "the-server-secret-for-real-socket-tests-0123456789"
OTHER = "a-different-secret-that-signs-nothing-valid-here"
GRANTS = {"join": ["room-*"], "subscribe": ["ticks.*"], "publish": [], "call": []}
WSKIT = [sys.executable, "-m", "wskit"]


def token(key: str = SECRET, **claims) -> str:
    return issue_token(key, "alice", name="Alice", permissions=GRANTS, claims=claims)


def alg_none() -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return part({"alg": "none", "typ": "JWT"}) + "." + part(
        {"sub": "alice", "exp": int(time.time()) + 600, "wskit": {"publish": ["*"]}}) + "."


auth_server = server_fixture("--auth-secret", SECRET, "--ticker-interval", "0.2")
open_server = server_fixture("--ticker-interval", "0.2", "--max-message-rate", "5", "--rate-burst", "1")


async def peer(server: Server, protocol: str, value: str | None = None, query: bool = False) -> Peer:
    url = server.url + (f"?token={value}" if query and value else "")
    headers = {"Authorization": f"Bearer {value}"} if value and not query else None
    return Peer(await connect(url, subprotocols=[protocol], additional_headers=headers, open_timeout=10))


async def refusal(server: Server, value: str | None):
    headers = {"Authorization": f"Bearer {value}"} if value else None
    with pytest.raises(InvalidStatus) as info:
        await connect(server.url, subprotocols=["wskit.chat.v2.json"], additional_headers=headers, open_timeout=10)
    response = info.value.response
    return response.status_code, response.headers.get("WWW-Authenticate"), bytes(response.body).decode()


# -- the must-show scenario --------------------------------------------------------------------


def test_handshakes_without_a_valid_token_get_401(auth_server):
    cases = {
        "none": (None, "authentication required"),
        "expired": (token(exp=int(time.time()) - 3600), "token expired"),
        "other key": (token(key=OTHER), "bad signature"),
        "alg none": (alg_none(), "algorithm 'none' not allowed"),
    }

    async def main():
        return {name: await refusal(auth_server, value) for name, (value, _) in cases.items()}

    answers = run(main())
    for name, (value, reason) in cases.items():
        status, challenge, body = answers[name]
        assert status == 401 and reason in body, (name, answers[name])
        assert challenge.startswith('Bearer realm="wskit"'), (name, challenge)
        if value is not None:
            assert 'error="invalid_token"' in challenge
    for name, (value, reason) in cases.items():
        line = auth_server.proc.wait_for_log(reason)
        assert "wskit: refused" in line and "status=401" in line
    log = "\n".join(auth_server.proc.lines)
    for value, _ in cases.values():
        for piece in (value or "").split("."):
            assert len(piece) < 8 or piece not in log  # never a token in the log


def test_a_token_limits_what_the_client_may_do(auth_server):
    value = token()

    async def main():
        chat = await peer(auth_server, "wskit.chat.v2.json", value)
        await chat.send({"type": "join", "room": "room-a", "nick": "mallory"})
        joined = await chat.recv()
        await chat.send({"type": "join", "room": "lobby", "nick": "mallory"})
        denied_join = await chat.recv()
        await chat.send({"type": "say", "room": "room-a", "text": "hello"})
        said = await chat.recv_until("message")
        # A browser cannot set headers: the same token as ?token=.
        ticks = await peer(auth_server, "wskit.pubsub.v1.json", value, query=True)
        await ticks.send({"type": "subscribe", "topic": "ticks.demo"})
        subscribed = await ticks.recv()
        await ticks.send({"type": "publish", "topic": "ticks.demo", "data": {"symbol": "FAKE"}})
        denied_publish = await ticks.recv_until("error")
        events = [await ticks.recv_until("event") for _ in range(3)]
        await chat.close()
        await ticks.close()
        return joined, denied_join, said, subscribed, denied_publish, events

    joined, denied_join, said, subscribed, denied_publish, events = run(main())
    assert (joined["type"], joined["room"], joined["nick"]) == ("joined", "room-a", "Alice")
    assert (denied_join["type"], denied_join["code"]) == ("error", "forbidden")
    assert (said["from"], said["text"]) == ("Alice", "hello")
    assert subscribed == {"type": "subscribed", "topic": "ticks.demo"}
    assert denied_publish["code"] == "forbidden"
    assert all(e["topic"] == "ticks.demo" and e["data"]["symbol"] != "FAKE" for e in events)


def test_without_auth_clients_cannot_publish_to_the_server_ticker(open_server):
    async def main():
        listener = await peer(open_server, "wskit.pubsub.v1.json")
        await listener.send({"type": "subscribe", "topic": "ticks.demo"})
        await listener.recv_until("subscribed")
        forger = await peer(open_server, "wskit.pubsub.v1.msgpack")
        await forger.send({"type": "publish", "topic": "ticks.demo", "data": {"symbol": "FAKE"}})
        refused = await forger.recv_until("error")
        events = [await listener.recv_until("event") for _ in range(8)]
        await forger.close()
        await listener.close()
        return refused, events

    refused, events = run(main())
    assert (refused["code"], refused["message"]) == ("forbidden", "topic 'ticks.demo' is published by the server only")
    assert {e["data"]["symbol"] for e in events} <= {"WSKT", "ABHN", "TWST", "AIO"}  # the server's ticks only


def test_a_client_over_the_message_rate_is_throttled_and_others_are_not(open_server):
    # --max-message-rate 5 --rate-burst 1: 5 messages at once, then one per 0.2 s: a flood is
    # slowed to that rate by reading pauses (TCP backpressure), in order, nothing dropped.
    async def main():
        steady = Peer(await connect(open_server.url, open_timeout=10))  # wskit.echo
        start = time.monotonic()
        for i in range(8):
            await steady.ws.send(f"s{i}")
        echoes = [await steady.ws.recv() for _ in range(8)]
        await steady.ws.send("late")  # 3 in debt: not read before ~0.6 s after the start
        assert await steady.ws.recv() == "late"
        throttled_for = time.monotonic() - start

        flooder = Peer(await connect(open_server.url, open_timeout=10))
        bystander = Peer(await connect(open_server.url, open_timeout=10))
        flood_start = time.monotonic()
        for i in range(20):
            await flooder.ws.send(f"f{i}")
        bystander_start = time.monotonic()
        for i in range(3):
            await bystander.ws.send(f"b{i}")
        bystander_echoes = [await bystander.ws.recv() for _ in range(3)]
        bystander_time = time.monotonic() - bystander_start
        flood_echoes = [await asyncio.wait_for(flooder.ws.recv(), 10) for _ in range(20)]
        flood_time = time.monotonic() - flood_start
        await bystander.ws.send("still here")
        still = await bystander.ws.recv()
        for peer in (steady, flooder, bystander):
            await peer.close()
        return echoes, throttled_for, flood_echoes, flood_time, bystander_echoes, bystander_time, still

    echoes, throttled_for, flood_echoes, flood_time, bystander_echoes, bystander_time, still = run(main())
    assert echoes == [f"s{i}" for i in range(8)]
    assert throttled_for >= 0.5, throttled_for
    assert flood_echoes == [f"f{i}" for i in range(20)]
    assert flood_time >= 2.5, flood_time  # 5 at once, then 15 more at 5 per second (minus one ahead)
    assert bystander_echoes == ["b0", "b1", "b2"] and bystander_time < 0.5, bystander_time
    assert still == "still here"
    assert "wskit: throttling" in open_server.proc.wait_for_log("wskit: throttling")


@pytest.mark.parametrize("backend", BACKENDS)
def test_connections_per_address_beyond_the_limit_get_503(backend):
    proc, port = serve(backend, "--max-connections-per-ip", "2", "--ticker-interval", "0")
    url = f"ws://127.0.0.1:{port}/ws"

    async def main():
        first = await connect(url, open_timeout=10)
        second = await connect(url, open_timeout=10)
        with pytest.raises(InvalidStatus) as info:
            await connect(url, open_timeout=10)
        response = info.value.response
        await first.close()
        for _ in range(50):  # the server counts the connection gone once TCP is
            try:
                third = await connect(url, open_timeout=10)
                break
            except InvalidStatus:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a freed slot was never reused")
        await third.close()
        await second.close()
        return response.status_code, bytes(response.body).decode()

    with proc:
        status, body = run(main())
        assert status == 503 and "too many connections from 127.0.0.1 (at most 2 per address)" in body
        assert "status=503" in proc.wait_for_log("wskit: refused")


# -- twistd, the CLI and the clients -----------------------------------------------------------


def test_twistd_takes_the_auth_options(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    proc, port = twistd("--auth-secret-file", str(secret_file), "--ticker-interval", "0")
    server = Server("twistd", port, proc)

    async def main():
        status = (await refusal(server, None))[0]
        chat = await peer(server, "wskit.chat.v2.json", token())
        await chat.send({"type": "join", "room": "lobby"})
        denied = await chat.recv()
        await chat.close()
        return status, denied

    with proc:
        status, denied = run(main())
    assert status == 401 and denied["code"] == "forbidden"


def test_twistd_refuses_an_unreadable_key_file_like_a_bad_option(tmp_path):
    result = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "wskit", "--auth-public-key", str(tmp_path / "nope.pem")],
        capture_output=True, text=True, timeout=60, env=python_env(), cwd=str(ROOT))
    assert result.returncode != 0
    assert "UsageError: cannot read auth public key" in result.stdout + result.stderr


def wskit(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(WSKIT + list(args), input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=python_env(), cwd=str(ROOT))


def test_wskit_token_and_wskit_connect_with_it(auth_server, tmp_path):
    made = wskit("token", "--secret", SECRET, "--sub", "bob", "--name", "Bob", "--join", "room-*",
                 "--subscribe", "ticks.*", "--ttl", "600")
    assert made.returncode == 0, made.stderr
    value = made.stdout.strip()
    assert value.count(".") == 2 and "warning" not in made.stderr  # a long secret: no warning
    url = auth_server.url
    line = '{"type": "join", "room": "room-cli", "nick": "ignored"}\n'
    joined = wskit("connect", url, "-s", "wskit.chat.v2.json", "--token", value, stdin=line)
    assert joined.returncode == 0, joined.stderr
    assert '"nick":"Bob"' in joined.stdout.replace(" ", "")
    token_file = tmp_path / "token"
    token_file.write_text(value + "\n")
    from_file = wskit("connect", url, "-s", "wskit.chat.v2.json", "--token-file", str(token_file), stdin=line)
    assert from_file.returncode == 0 and '"nick":"Bob"' in from_file.stdout.replace(" ", "")
    refused = wskit("connect", url, stdin="")
    lines = [x for x in refused.stderr.splitlines() if x.startswith("wskit: ")]
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert "HTTP 401 authentication required" in lines[0]


def test_wskit_token_warns_about_a_short_secret_and_checks_its_arguments():
    made = wskit("token", "--secret", "S", "--sub", "x")
    assert made.returncode == 0 and "shorter than 32 bytes" in made.stderr
    both = wskit("token", "--secret", "S", "--private-key", "k.pem", "--sub", "x")
    assert both.returncode == 2 and "give exactly one key" in both.stderr


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_wskit_connect_api_sends_the_token(auth_server, client_backend):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "auth_client_script.py"), client_backend, auth_server.url, token()],
        capture_output=True, text=True, timeout=90, env=python_env(), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["joined"] == ["joined", "Alice"]
    assert out["forbidden"] == "forbidden"
    assert out["no_token"] == [401, "authentication required: send Authorization: Bearer <token> or ?token=<token>"]
