"""Authentication, permissions, server-only topics and abuse limits, on every backend, in memory.

Real tokens (PyJWT, signed in process) against the server protocol classes on
a fake clock. Each backend folder's test_auth.py imports these cases; the
``tier`` fixture supplies the backend. Nothing here knows which backend runs it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import txaio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from memory import frames as f
from memory.driver import memory_settings
from wskit.auth import issue_token
from wskit.settings import AppSettings, AuthSettings, LimitSettings, RateLimitSettings, TimeoutSettings

SECRET = "memory-tier-shared-secret-at-least-32-bytes"
OTHER_SECRET = "another-shared-secret-nobody-configured-here"
DEMO_GRANTS = {"join": ["room-*"], "subscribe": ["ticks.*"], "publish": [], "call": []}
CHAT, PUBSUB, RPC = "wskit.chat.v2.json", "wskit.pubsub.v1.json", "wskit.rpc.v1.json"


def token(key=SECRET, sub="alice", name="Alice", grants=DEMO_GRANTS, algorithm="HS256", **claims):
    return issue_token(key, sub, name=name, permissions=grants, algorithm=algorithm, claims=claims)


def bearer(value):
    return (("Authorization", f"Bearer {value}"),)


def auth_settings(**auth):
    changes = {}
    for name in ("apps", "limits", "rate_limits", "timeouts"):
        if name in auth:
            changes[name] = auth.pop(name)
    return memory_settings(auth=AuthSettings(**{"secret": SECRET, **auth}), **changes)


def open_as(tier, factory, value, protocol=CHAT):
    conn = tier.connect(factory)
    conn.open(protocols=(protocol,), headers=bearer(value))
    return conn


def send_json(conn, *messages):
    conn.send(*[f.text(json.dumps(m)) for m in messages])


def received(conn):
    return [json.loads(fr.payload) for fr in conn.data_frames()]


def refused(tier, conn, head, status=401):
    assert head.status == status, f"{head.start_line} {head.body!r}"
    tier.settle()
    assert conn.lost and conn.proto.handler is None
    return head.body.decode()


def alg_none(claims):
    """An unsigned token (``alg: none``), written by hand as an attacker would."""
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def hs256_by_hand(claims, key: bytes):
    """An HS256 token signed with any bytes (PyJWT refuses a PEM key as an HMAC secret)."""
    def part(data: bytes):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def tampered(value):
    """The token with its payload rewritten (more grants) and the signature kept."""
    header, payload, signature = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["wskit"]["publish"] = ["*"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# -- 1. the handshake -------------------------------------------------------------------------


def test_no_token_is_refused_with_401_and_a_bearer_challenge(tier):
    conn = tier.connect(tier.server(auth_settings()))
    head = conn.handshake(protocols=(CHAT,))
    body = refused(tier, conn, head)
    assert "authentication required" in body and "Authorization: Bearer" in body
    assert head.header("www-authenticate") == 'Bearer realm="wskit"'  # RFC 6750 3.1: no error code
    (line,) = tier.log_lines("wskit: refused")
    assert "status=401" in line.text
    if tier.structured_logs:
        assert line.event == "refused"


def test_a_valid_token_in_the_header_opens_and_names_the_connection(tier):
    factory = tier.server(auth_settings())
    conn = open_as(tier, factory, token())
    identity = conn.proto.identity
    assert (identity.sub, identity.name, identity.display_name) == ("alice", "Alice", "Alice")
    assert identity.permissions.allows("join", "room-a") and not identity.permissions.allows("join", "lobby")
    assert identity.claims["wskit"] == DEMO_GRANTS
    assert not tier.log_lines("wskit: refused")


def test_a_valid_token_in_the_query_opens(tier):
    conn = tier.connect(tier.server(auth_settings()))
    conn.open(path=f"/ws?token={token()}", protocols=(CHAT,))
    assert conn.proto.identity.sub == "alice"


def test_query_tokens_can_be_turned_off(tier):
    conn = tier.connect(tier.server(auth_settings(query_token=False)))
    head = conn.handshake(path=f"/ws?token={token()}")
    assert "Authorization: Bearer <token>" in refused(tier, conn, head)
    assert "?token=" not in head.body.decode()


def test_authentication_off_ignores_tokens(tier):
    conn = tier.connect(tier.server())
    conn.open(protocols=(CHAT,), headers=bearer("not even a token"))
    assert conn.proto.identity is None


BAD_TOKENS = {
    "expired": (lambda: token(exp=int(time.time()) - 3600), "token expired"),
    "not yet valid": (lambda: token(nbf=int(time.time()) + 3600), "not yet valid"),
    "signed with another key": (lambda: token(key=OTHER_SECRET), "bad signature"),
    "tampered payload": (lambda: tampered(token()), "bad signature"),
    "alg none": (lambda: alg_none({"sub": "alice", "exp": int(time.time()) + 3600, "wskit": {"publish": ["*"]}}),
                 "algorithm 'none' not allowed"),
    "another HMAC algorithm": (lambda: token(algorithm="HS512"), "algorithm 'HS512' not allowed"),
    "wrong audience": (lambda: token(aud="someone-else"), "wrong audience"),
    "garbage": (lambda: "not.a.jwt", "malformed token"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens_are_refused_with_401_invalid_token(tier, case):
    make, reason = BAD_TOKENS[case]
    value = make()
    conn = tier.connect(tier.server(auth_settings()))
    head = conn.handshake(protocols=(CHAT,), headers=bearer(value))
    body = refused(tier, conn, head)
    assert body.startswith("invalid token: ") and reason in body, body
    challenge = head.header("www-authenticate")
    assert challenge.startswith('Bearer realm="wskit", error="invalid_token", error_description="')
    (line,) = tier.log_lines("wskit: refused")
    assert "status=401" in line.text and reason in line.text
    # Neither the token nor any part of it reaches the logs.
    for piece in value.split("."):
        if len(piece) > 8:
            assert all(piece not in logged.text for logged in tier.logs), case


def test_missing_required_claims_are_refused(tier):
    factory = tier.server(auth_settings())
    no_exp = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    for value, claim in ((no_exp, "'exp'"), (no_sub, "'sub'")):
        conn = tier.connect(factory)
        body = refused(tier, conn, conn.handshake(headers=bearer(value)))
        assert f"token has no {claim} claim" in body


def test_a_malformed_permissions_claim_is_refused(tier):
    conn = tier.connect(tier.server(auth_settings()))
    value = issue_token(SECRET, "alice", claims={"wskit": {"join": "room-*", "call": [1]}})
    assert "wskit.call must be a list of patterns" in refused(tier, conn, conn.handshake(headers=bearer(value)))


def test_audience_and_issuer_when_configured(tier):
    factory = tier.server(auth_settings(audience="chat.example", issuer="https://id.example"))
    good = token(aud="chat.example", iss="https://id.example")
    assert open_as(tier, factory, good).proto.identity.sub == "alice"
    for value, reason in ((token(iss="https://id.example"), "token has no 'aud' claim"),
                          (token(aud="chat.example", iss="https://evil.example"), "wrong issuer"),
                          (token(aud="other", iss="https://id.example"), "wrong audience")):
        conn = tier.connect(factory)
        assert reason in refused(tier, conn, conn.handshake(headers=bearer(value)))


def test_leeway_tolerates_a_little_clock_skew(tier):
    factory = tier.server(auth_settings(leeway=30))
    now = int(time.time())
    assert open_as(tier, factory, token(exp=now - 10)).proto.identity is not None
    conn = tier.connect(factory)
    assert "token expired" in refused(tier, conn, conn.handshake(headers=bearer(token(exp=now - 60))))
    conn = tier.connect(factory)
    assert "not yet valid" in refused(tier, conn, conn.handshake(headers=bearer(token(nbf=now + 60))))


def _keypair(kind):
    if kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_tokens(tier, tmp_path, algorithm):
    private, public = _keypair(algorithm)
    other, _ = _keypair(algorithm)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(public)
    factory = tier.server(memory_settings(auth=AuthSettings(public_key_file=str(key_file))))
    assert factory.app.guard.verifier.algorithms == (algorithm,)
    assert open_as(tier, factory, token(key=private, algorithm=algorithm)).proto.identity.name == "Alice"
    refusals = (
        (token(key=other, algorithm=algorithm), "bad signature"),
        # Algorithm confusion: the public key (which anyone may have) used as an HMAC secret.
        (hs256_by_hand({"sub": "eve", "exp": int(time.time()) + 60}, public), "algorithm 'HS256' not allowed"),
        (token(key=SECRET), "algorithm 'HS256' not allowed"),
    )
    for value, reason in refusals:
        conn = tier.connect(factory)
        assert reason in refused(tier, conn, conn.handshake(headers=bearer(value)))


def test_the_connection_closes_when_its_token_expires(tier):
    factory = tier.server(auth_settings(leeway=5, timeouts=TimeoutSettings(auto_ping_interval=0)))
    conn = open_as(tier, factory, token(exp=int(time.time()) + 100))
    tier.advance(95)
    assert conn.proto.is_connected
    tier.advance(15)
    close = conn.close_frame()
    assert (close.close_code, close.close_reason) == (1008, "token expired")
    assert tier.log_lines("token expired")


def test_expired_tokens_can_keep_their_connection(tier):
    factory = tier.server(auth_settings(leeway=0, close_on_expiry=False,
                                        timeouts=TimeoutSettings(auto_ping_interval=0)))
    conn = open_as(tier, factory, token(exp=int(time.time()) + 10))
    tier.advance(60)
    assert conn.proto.is_connected and conn.frames() == []


# -- 2. permissions per action ---------------------------------------------------------------


def test_chat_join_matrix_and_the_nick_from_the_token(tier):
    factory = tier.server(auth_settings())
    conn = open_as(tier, factory, token())
    send_json(conn, {"type": "join", "room": "room-a", "nick": "mallory", "ref": 1},
              {"type": "join", "room": "lobby", "nick": "mallory", "ref": 2},
              {"type": "join", "room": "room-b", "ref": 3},  # no nick at all: the token's is used
              {"type": "say", "room": "room-a", "text": "hello"})
    joined_a, denied, joined_b, message = received(conn)
    assert (joined_a["type"], joined_a["nick"], joined_a["members"]) == ("joined", "Alice", ["Alice"])
    assert denied == {"type": "error", "code": "forbidden", "message": "not allowed to join 'lobby'", "ref": 2}
    assert (joined_b["type"], joined_b["nick"]) == ("joined", "Alice")
    assert (message["from"], message["text"]) == ("Alice", "hello")
    assert factory.app.services["chat"].members("room-a") == ["Alice"]
    assert factory.app.services["chat"].members("lobby") == []


def test_chat_nick_falls_back_to_sub_on_v1(tier):
    factory = tier.server(auth_settings())
    conn = open_as(tier, factory, token(sub="bob-42", name=None), protocol="wskit.chat.v1.json")
    send_json(conn, {"type": "join", "room": "room-x", "nick": "alice"})
    (joined,) = received(conn)
    assert joined["nick"] == "bob-42"


def test_pubsub_subscribe_and_publish_matrix(tier):
    factory = tier.server(auth_settings())
    grants = {"subscribe": ["ticks.*", "news.sport"], "publish": ["news.*"]}
    conn = open_as(tier, factory, token(grants=grants), protocol=PUBSUB)
    cases = [("ticks.demo", True), ("ticks.*", True), ("ticks.**", True), ("news.sport", True),
             ("news.*", False), ("**", False), ("*.demo", False), ("other", False)]
    for topic, allowed in cases:
        send_json(conn, {"type": "subscribe", "topic": topic})
        (answer,) = received(conn)
        assert answer["type"] == ("subscribed" if allowed else "error"), (topic, answer)
        if not allowed:
            assert answer["code"] == "forbidden"
    send_json(conn, {"type": "publish", "topic": "news.sport", "data": 1},
              {"type": "publish", "topic": "ticks.demo", "data": 2})
    event, denied = received(conn)
    assert (event["type"], event["topic"], event["data"]) == ("event", "news.sport", 1)
    assert (denied["code"], denied["message"]) == ("forbidden", "not allowed to publish 'ticks.demo'")


def test_rpc_call_matrix(tier):
    factory = tier.server(auth_settings())
    conn = open_as(tier, factory, token(grants={"call": ["add", "rpc.*"]}), protocol=RPC)
    send_json(conn, {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1},
              {"jsonrpc": "2.0", "method": "echo", "params": ["x"], "id": 2},
              {"jsonrpc": "2.0", "method": "nope", "id": 3},         # unknown and not allowed: forbidden
              {"jsonrpc": "2.0", "method": "echo", "params": ["x"]},  # a denied notification: no answer
              [{"jsonrpc": "2.0", "method": "add", "params": [2], "id": "a"},
               {"jsonrpc": "2.0", "method": "time", "id": "b"}],
              {"jsonrpc": "2.0", "method": "rpc.discover", "id": 4})
    answers = received(conn)
    assert answers[0] == {"jsonrpc": "2.0", "result": 3, "id": 1}
    assert answers[1] == {"jsonrpc": "2.0", "id": 2,
                          "error": {"code": -32001, "message": "Forbidden", "data": "not allowed to call 'echo'"}}
    assert answers[2]["error"]["code"] == -32001 and answers[2]["id"] == 3
    assert answers[3] == [{"jsonrpc": "2.0", "result": 2, "id": "a"},
                          {"jsonrpc": "2.0", "id": "b", "error": {"code": -32001, "message": "Forbidden",
                                                                  "data": "not allowed to call 'time'"}}]
    assert "methods" in answers[4]["result"]
    assert len(answers) == 5


def test_rpc_unknown_method_with_permission_is_method_not_found(tier):
    factory = tier.server(auth_settings())
    conn = open_as(tier, factory, token(grants={"call": ["*"]}), protocol=RPC)
    send_json(conn, {"jsonrpc": "2.0", "method": "nope", "id": 1})
    (answer,) = received(conn)
    assert answer["error"]["code"] == -32601


def test_a_token_without_the_wskit_claim_may_do_nothing(tier):
    factory = tier.server(auth_settings())
    chat = open_as(tier, factory, issue_token(SECRET, "carol"))
    send_json(chat, {"type": "join", "room": "room-a"})
    assert received(chat)[0]["code"] == "forbidden"
    rpc = open_as(tier, factory, issue_token(SECRET, "carol"), protocol=RPC)
    send_json(rpc, {"jsonrpc": "2.0", "method": "time", "id": 1})
    assert received(rpc)[0]["error"]["code"] == -32001


@pytest.mark.parametrize("protocol", [CHAT, RPC])
def test_forbidden_actions_count_against_the_error_budget(tier, protocol):
    factory = tier.server(auth_settings(apps=AppSettings(error_budget=2)))
    conn = open_as(tier, factory, token(), protocol=protocol)
    if protocol == CHAT:
        denied = [{"type": "join", "room": f"lobby-{i}"} for i in range(3)]
    else:
        denied = [{"jsonrpc": "2.0", "method": "time", "id": i} for i in range(3)]
    send_json(conn, *denied[:2])
    assert len(received(conn)) == 2 and conn.proto.is_connected
    send_json(conn, denied[2])
    close = conn.close_frame()
    assert (close.close_code, close.close_reason) == (1008, "more than 2 bad messages")


# -- 3. the policy hook ---------------------------------------------------------------------


def test_a_plain_bool_hook_replaces_the_claim_check(tier):
    calls = []

    def policy(identity, action, target):
        calls.append((identity.sub, action, target))
        return target != "lobby"

    factory = tier.server(auth_settings(authorize=policy))
    conn = open_as(tier, factory, token(grants={}))  # the claim grants nothing: the hook decides
    send_json(conn, {"type": "join", "room": "anything"}, {"type": "join", "room": "lobby"})
    joined, denied = received(conn)
    assert joined["type"] == "joined" and denied["code"] == "forbidden"
    assert calls == [("alice", "join", "anything"), ("alice", "join", "lobby")]


def test_a_hook_runs_with_authentication_off(tier):
    def policy(identity, action, target):
        assert identity is None
        return action != "publish"

    factory = tier.server(memory_settings(auth=AuthSettings(authorize=policy)))
    conn = tier.connect(factory)
    conn.open(protocols=(PUBSUB,))
    send_json(conn, {"type": "subscribe", "topic": "t"}, {"type": "publish", "topic": "t", "data": 1})
    subscribed, denied = received(conn)
    assert subscribed["type"] == "subscribed" and denied["code"] == "forbidden"


def test_a_hook_returning_a_finished_future(tier):
    factory = tier.server(auth_settings(authorize=lambda identity, action, target: tier.succeeded(target == "a")))
    conn = open_as(tier, factory, token(), protocol=PUBSUB)
    send_json(conn, {"type": "subscribe", "topic": "a"}, {"type": "subscribe", "topic": "b"})
    assert [m["type"] for m in received(conn)] == ["subscribed", "error"]


def test_a_coroutine_hook(tier):
    async def policy(identity, action, target):
        return action == "call" and target == "add"

    factory = tier.server(auth_settings(authorize=policy))
    conn = open_as(tier, factory, token(), protocol=RPC)
    send_json(conn, {"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": 1},
              {"jsonrpc": "2.0", "method": "echo", "id": 2})
    tier.settle()
    answers = sorted(received(conn), key=lambda a: a["id"])
    assert answers[0]["result"] == 2 and answers[1]["error"]["code"] == -32001


def test_a_pending_decision_holds_later_messages_in_order(tier):
    pending = []

    def policy(identity, action, target):
        future = txaio.create_future()
        pending.append((target, future))
        return future

    factory = tier.server(auth_settings(authorize=policy))
    conn = open_as(tier, factory, token())
    send_json(conn, {"type": "join", "room": "r1", "ref": 1}, {"type": "say", "room": "r1", "text": "first"},
              {"type": "join", "room": "r2", "ref": 2}, {"type": "say", "room": "r2", "text": "second"})
    assert received(conn) == []
    assert [t for t, _ in pending] == ["r1"]  # the rest waits behind the first decision
    assert conn.reading_paused
    txaio.resolve(pending[0][1], True)
    tier.settle()
    first = received(conn)
    assert [(m["type"], m.get("room"), m.get("text")) for m in first] == [("joined", "r1", None),
                                                                           ("message", "r1", "first")]
    assert [t for t, _ in pending] == ["r1", "r2"] and conn.reading_paused
    txaio.resolve(pending[1][1], False)
    tier.settle()
    second = received(conn)
    assert [(m["type"], m.get("code")) for m in second] == [("error", "forbidden"), ("error", "not-joined")]
    assert not conn.reading_paused


def test_a_decision_arriving_after_the_close_does_nothing(tier):
    pending = []

    def policy(identity, action, target):
        pending.append(txaio.create_future())
        return pending[-1]

    factory = tier.server(auth_settings(authorize=policy))
    conn = open_as(tier, factory, token())
    send_json(conn, {"type": "join", "room": "room-a"})
    conn.peer_disconnects()
    txaio.resolve(pending[0], True)
    tier.settle()
    assert factory.app.services["chat"].members("room-a") == []


def test_a_failing_hook_denies_and_is_logged(tier):
    def policy(identity, action, target):
        if target == "sync":
            raise RuntimeError("policy bug")
        return tier.failed(RuntimeError("policy store down"))

    factory = tier.server(auth_settings(authorize=policy))
    conn = open_as(tier, factory, token(), protocol=PUBSUB)
    send_json(conn, {"type": "subscribe", "topic": "sync"}, {"type": "subscribe", "topic": "async"})
    tier.settle()
    assert [m.get("code") for m in received(conn)] == ["forbidden", "forbidden"]
    assert tier.log_lines("policy bug") and tier.log_lines("policy store down")
    assert conn.proto.is_connected


# -- 4. server-only topics --------------------------------------------------------------------


def test_server_only_topics_refuse_client_publishes_with_auth_off(tier):
    factory = tier.server(memory_settings(apps=AppSettings(server_only_topics=("alerts.*",))))
    pubsub = factory.app.services["pubsub"]
    pubsub.server_only("ticks.demo")
    subscriber, publisher = tier.connect(factory), tier.connect(factory)
    for conn in (subscriber, publisher):
        conn.open(protocols=(PUBSUB,))
    send_json(subscriber, {"type": "subscribe", "topic": "ticks.demo"}, {"type": "subscribe", "topic": "alerts.x"})
    received(subscriber)
    send_json(publisher, {"type": "publish", "topic": "ticks.demo", "data": "fake"},
              {"type": "publish", "topic": "alerts.x", "data": "fake"},
              {"type": "publish", "topic": "free", "data": "fine"})
    assert [(m["code"], m["message"]) for m in received(publisher)] == [
        ("forbidden", "topic 'ticks.demo' is published by the server only"),
        ("forbidden", "topic 'alerts.x' is published by the server only")]
    assert received(subscriber) == []  # nothing fake got through
    assert pubsub.publish("ticks.demo", {"price": 1}) == 1  # the server's own publish is delivered
    tier.settle()  # (published outside the loop's callbacks: written at the end of the loop turn)
    assert received(subscriber) == [{"type": "event", "topic": "ticks.demo", "data": {"price": 1}}]


def test_the_demo_ticker_reserves_its_topic(tier):
    app = tier.app(memory_settings(ticker_interval=1.0))
    assert app.services["pubsub"].is_server_only("ticks.demo")
    assert not tier.app().services["pubsub"].is_server_only("ticks.demo")  # no ticker, no reservation


# -- 5. rate limits and per-address limits ------------------------------------------------------


def _echo(tier, **limits):
    factory = tier.server(memory_settings(rate_limits=RateLimitSettings(**limits),
                                          limits=LimitSettings(max_message_size=1000)))
    conn = tier.connect(factory)
    conn.open()
    return factory, conn


def test_over_the_message_rate_reading_pauses_until_the_bucket_refills(tier):
    factory, conn = _echo(tier, max_message_rate=10, burst=1)
    conn.send(*[f.text(f"m{i}") for i in range(10)])  # the whole burst: fine
    assert len(conn.data_frames()) == 10 and not conn.reading_paused
    conn.send(f.text("m10"), f.text("m11"))  # one over: handled, then reading pauses for 0.1 s
    assert [fr.payload for fr in conn.data_frames()] == [b"m10"]  # m11 was read but waits
    assert conn.reading_paused
    tier.advance(0.05)
    assert conn.reading_paused and conn.data_frames() == []
    tier.advance(0.1)  # the bucket refilled: m11 is handled, one over again
    assert [fr.payload for fr in conn.data_frames()] == [b"m11"]
    tier.advance(0.15)
    assert not conn.reading_paused and conn.proto.is_connected
    (line,) = tier.log_lines("wskit: throttling")
    assert "messages rate limit" in line.text
    if tier.structured_logs:
        assert line.event == "throttled"


def test_a_flood_in_one_read_is_throttled_to_the_rate(tier):
    factory = tier.server(memory_settings(rate_limits=RateLimitSettings(max_message_rate=10, burst=1)))
    flooder, other = tier.connect(factory), tier.connect(factory)
    flooder.open()
    other.open()
    flooder.send(b"".join(f.text(f"m{i}") for i in range(25)))  # one read: 10 allowed, 15 over
    # The burst and the one message that went over; the rest of that read waits while reading is paused.
    assert [fr.payload for fr in flooder.data_frames()] == [f"m{i}".encode() for i in range(11)]
    assert flooder.reading_paused
    # Another client of the same server is not affected.
    other.send(*[f.text("fine") for _ in range(5)])
    assert len(other.data_frames()) == 5 and not other.reading_paused and other.proto.is_connected
    echoed = []
    for _ in range(30):  # 1.5 s at 10 messages/s: the other 14 arrive, at the configured rate
        tier.advance(0.05)
        echoed += [fr.payload for fr in flooder.data_frames()]
    assert echoed == [f"m{i}".encode() for i in range(11, 25)]
    assert flooder.proto.is_connected


def test_the_byte_rate(tier):
    factory, conn = _echo(tier, max_byte_rate=1000, burst=1)
    conn.send(f.binary(b"x" * 1000))
    assert not conn.reading_paused
    conn.send(f.binary(b"y" * 500))
    assert conn.reading_paused and len(conn.data_frames()) == 2
    tier.advance(0.55)
    assert not conn.reading_paused
    conn.send(f.binary(b"z" * 600))  # 0.05 s since the debt was paid: 550 in debt
    assert conn.reading_paused and conn.proto.is_connected
    conn.send(f.binary(b"w" * 500))  # arrives while paused: waits for the bucket
    assert [fr.payload[:1] for fr in conn.data_frames()] == [b"z"]
    tier.advance(0.6)
    assert [fr.payload[:1] for fr in conn.data_frames()] == [b"w"]
    assert conn.proto.is_connected


def test_connections_per_address_are_limited_with_503(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_connections_per_ip=2)))
    first, second = tier.connect(factory), tier.connect(factory)
    first.open()
    second.open()
    third = tier.connect(factory)
    head = third.handshake()
    assert head.status == 503
    assert "too many connections from 127.0.0.1 (at most 2 per address)" in head.body.decode()
    (line,) = tier.log_lines("wskit: refused")
    assert "status=503" in line.text
    tier.settle()
    assert factory.app.guard.per_address == {"127.0.0.1": 2}  # the refused one never counted
    first.send(f.close(1000))
    tier.settle()
    assert first.lost and factory.app.guard.per_address == {"127.0.0.1": 1}
    tier.connect(factory).open()
