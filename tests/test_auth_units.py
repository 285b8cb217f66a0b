"""The pure pieces of authentication and rate limiting, table-tested without sockets or a backend."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from wskit.auth import (
    Authorizer,
    InvalidToken,
    Permissions,
    TokenVerifier,
    glob_match,
    issue_token,
    pattern_covers,
    redact_query_token,
    token_from_request,
)
from wskit.guard import ServerGuard, Unauthorized, peer_address
from wskit.options import server_settings
from wskit.ratelimit import CLOSE, PASS, THROTTLE, Throttle
from wskit.settings import AuthSettings, LimitSettings, RateLimitSettings, ServerSettings, SettingsError

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


@pytest.mark.parametrize("pattern, text, expected", [
    ("room-*", "room-a", True),
    ("room-*", "room-", True),
    ("room-*", "lobby", False),
    ("ticks.*", "ticks.demo", True),
    ("ticks.*", "ticks.fx.EURUSD", True),  # '*' crosses dots
    ("ticks.*", "ticks", False),
    ("*", "anything.at.all", True),
    ("a?", "ab", False),  # no '?' wildcard: it is a literal
    ("a?", "a?", True),
    ("[ab]", "a", False),  # no character classes either
    ("*.demo", "ticks.demo", True),
    ("a*b*c", "aXbYc", True),
    ("a*b*c", "aXbY", False),
    ("", "", True),
    ("", "x", False),
])
def test_glob_match(pattern, text, expected):
    assert glob_match(pattern, text) is expected


@pytest.mark.parametrize("permission, subscription, expected", [
    ("ticks.*", "ticks.*", True),
    ("ticks.*", "ticks.**", True),
    ("ticks.*", "ticks.fx.*", True),
    ("ticks.*", "**", False),
    ("ticks.*", "*.demo", False),
    ("ticks.a*", "ticks.*", False),  # ticks.* also matches ticks.b
    ("ticks.?", "ticks.*", False),  # the classic hole of fnmatch: '?' matching a literal '*'
    ("*.demo", "*.demo", True),
    ("*", "**", True),
    ("ticks.*.x", "ticks.**", False),
    ("ticks.*.x", "ticks.*.x", True),
])
def test_pattern_covers(permission, subscription, expected):
    assert pattern_covers(permission, subscription) is expected


def test_permissions_from_claim():
    perms = Permissions.from_claim({"join": ["room-*"], "subscribe": "ticks.*", "future-action": 1})
    assert perms.allows("join", "room-1") and not perms.allows("join", "lobby")
    assert perms.allows("subscribe", "ticks.x") and perms.allows("subscribe", "ticks.*")
    assert not perms.allows("publish", "ticks.x") and not perms.allows("call", "add")
    assert not Permissions.from_claim(None).allows("join", "x")
    with pytest.raises(InvalidToken):
        Permissions.from_claim(["join"])
    with pytest.raises(InvalidToken):
        Permissions.from_claim({"call": [1]})


def test_authorizer_defaults():
    assert Authorizer(AuthSettings()).check(None, "publish", "x") is True  # auth off: allowed
    assert not Authorizer(AuthSettings()).active
    on = Authorizer(AuthSettings(secret=SECRET))
    assert on.active and on.check(None, "join", "x") is False
    hooked = Authorizer(AuthSettings(authorize=lambda i, a, t: (i, a, t)))
    assert hooked.active and hooked.check(None, "call", "add") == (None, "call", "add")


def test_token_from_request():
    assert token_from_request({"authorization": "Bearer abc"}, {}) == "abc"
    assert token_from_request({"authorization": "bearer  abc "}, {}) == "abc"
    assert token_from_request({"authorization": "Basic abc"}, {}) is None
    assert token_from_request({}, {"token": ["q"]}) == "q"
    assert token_from_request({}, {"token": ["q"]}, query_token=False) is None
    assert token_from_request({"authorization": "Bearer h"}, {"token": ["q"]}) == "h"  # the header wins
    assert token_from_request({}, {"token": [""]}) is None


def test_redact_query_token():
    assert redact_query_token("GET /?token=abc.def HTTP/1.1") == "GET /?token=[redacted] HTTP/1.1"
    assert redact_query_token("/ws?x=1&token=a&y=2") == "/ws?x=1&token=[redacted]&y=2"
    assert redact_query_token("/ws?mytoken=a") == "/ws?mytoken=a"


def _pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("make, algorithm", [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
    (lambda: ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
])
def test_public_keys_pick_their_algorithm(tmp_path, make, algorithm):
    private = make()
    path = tmp_path / "public.pem"
    path.write_bytes(_pem(private))
    verifier = TokenVerifier(AuthSettings(public_key_file=str(path)))
    assert verifier.algorithms == (algorithm,)
    assert verifier.verify(issue_token(private, "k", algorithm=algorithm)).sub == "k"


def test_secret_file_and_both_kinds_of_key(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "public.pem").write_bytes(_pem(private))
    (tmp_path / "secret").write_text(SECRET + "\n")
    verifier = TokenVerifier(AuthSettings(secret_file=str(tmp_path / "secret"),
                                          public_key_file=str(tmp_path / "public.pem")))
    assert verifier.algorithms == ("HS256", "ES256")
    assert verifier.verify(issue_token(SECRET, "a")).sub == "a"
    assert verifier.verify(issue_token(private, "b", algorithm="ES256")).sub == "b"
    assert not verifier.short_secret
    assert TokenVerifier(AuthSettings(secret="short")).short_secret


def test_key_files_that_cannot_be_used_are_settings_errors(tmp_path):
    with pytest.raises(SettingsError, match="cannot read auth public key"):
        TokenVerifier(AuthSettings(public_key_file=str(tmp_path / "missing.pem")))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(SettingsError, match="is not a PEM public key"):
        TokenVerifier(AuthSettings(public_key_file=str(tmp_path / "junk.pem")))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        TokenVerifier(AuthSettings(secret_file=str(tmp_path / "empty")))


@pytest.mark.parametrize("settings, message", [
    (AuthSettings(secret="a", secret_file="b"), "not both"),
    (AuthSettings(secret=""), "must not be empty"),
    (AuthSettings(secret="x", leeway=-1), "leeway"),
    (AuthSettings(secret="x", algorithms=("RS256",)), "needs a public key"),
    (AuthSettings(public_key_file="k.pem", algorithms=("HS256",)), "needs a shared secret"),
    (AuthSettings(secret="x", algorithms=("none",)), "unsupported token algorithm 'none'"),
    (AuthSettings(authorize="yes"), "must be a callable"),
])
def test_auth_settings_validation(settings, message):
    with pytest.raises(SettingsError, match=message):
        settings.validate()


def test_rate_settings_validation():
    with pytest.raises(SettingsError, match="must hold the largest message"):
        ServerSettings(rate_limits=RateLimitSettings(max_byte_rate=1000)).validate()
    ServerSettings(rate_limits=RateLimitSettings(max_byte_rate=1000),
                   limits=LimitSettings(max_message_size=2000)).validate()  # 1000 x 2 s holds it
    with pytest.raises(SettingsError, match="burst"):
        RateLimitSettings(burst=0).validate()
    with pytest.raises(SettingsError, match="at least one message"):
        RateLimitSettings(max_message_rate=0.1, burst=1).validate()


def test_options_build_the_auth_and_limit_settings():
    settings = server_settings({
        "auth_secret": SECRET, "auth_audience": "aud", "auth_issuer": "iss", "auth_leeway": 5.0,
        "auth_algorithm": ["HS256"], "auth_no_query_token": 1, "auth_keep_expired": 0,
        "max_connections_per_ip": 3, "max_message_rate": 20.0, "rate_burst": 3.0,
        "server_only_topic": ["alerts.*"],
    })
    auth = settings.auth
    assert (auth.secret, auth.audience, auth.issuer, auth.leeway, auth.algorithms) == (SECRET, "aud", "iss", 5.0,
                                                                                       ("HS256",))
    assert auth.query_token is False and auth.close_on_expiry is True and auth.enabled
    assert settings.limits.max_connections_per_ip == 3
    assert (settings.rate_limits.max_message_rate, settings.rate_limits.burst) == (20.0, 3.0)
    assert settings.apps.server_only_topics == ("alerts.*",)
    defaults = server_settings({})
    assert not defaults.auth.enabled and not defaults.rate_limits.enabled
    assert defaults.auth.leeway == 30.0 and defaults.rate_limits.burst == 2.0


def test_verify_never_reports_token_text():
    verifier = TokenVerifier(AuthSettings(secret=SECRET))
    weird = jwt.encode({"sub": "x"}, SECRET, algorithm="HS256", headers={"alg": "HS256"}).split(".")
    attempts = ["a" * 50, f"{weird[0]}.{weird[1]}", "x.y.z", issue_token(SECRET, "x", ttl=-100)]
    for attempt in attempts:
        with pytest.raises(InvalidToken) as info:
            verifier.verify(attempt)
        assert all(len(piece) < 8 or piece not in str(info.value) for piece in attempt.split("."))


def test_unauthorized_challenges():
    missing = Unauthorized("authentication required", error=None)
    assert (missing.code, missing.headers) == (401, (("WWW-Authenticate", 'Bearer realm="wskit"'),))
    bad = Unauthorized('invalid token: token has no "sub" claim')
    assert bad.headers[0][1] == ('Bearer realm="wskit", error="invalid_token", '
                                 "error_description=\"invalid token: token has no 'sub' claim\"")


@pytest.mark.parametrize("peer, address", [
    ("tcp4:127.0.0.1:50312", "127.0.0.1"),
    ("tcp6:::1:50312", "::1"),
    ("tcp6:::ffff:10.0.0.1:443", "10.0.0.1"),
    ("tcp6:2001:db8::1:80", "2001:db8::1"),
    ("unix:/run/ws.sock", None),
    ("unknown", None),
])
def test_peer_address(peer, address):
    assert peer_address(peer) == address


class FakeConnection:
    def __init__(self, peer):
        self.peer = peer


def test_server_guard_counts_connections_per_address():
    guard = ServerGuard(ServerSettings(limits=LimitSettings(max_connections_per_ip=1)))
    clock = (time.monotonic, lambda delay, fn: None)
    a1 = guard.attach(FakeConnection("tcp4:10.0.0.1:1"), clock)
    a2 = guard.attach(FakeConnection("tcp4:10.0.0.1:2"), clock)
    b = guard.attach(FakeConnection("tcp4:10.0.0.2:1"), clock)
    request = type("Request", (), {"headers": {}, "params": {}})()
    assert a1.admit(request) is None and b.admit(request) is None
    with pytest.raises(Exception) as info:
        a2.admit(request)
    assert info.value.code == 503
    a2.detach()
    a2.detach()  # twice is harmless
    assert guard.per_address == {"10.0.0.1": 1, "10.0.0.2": 1}
    a1.detach()
    b.detach()
    assert guard.per_address == {}


def test_throttle_policy():
    throttle = Throttle(RateLimitSettings(max_message_rate=2, max_byte_rate=100, burst=1), now=0.0)
    assert throttle.admit(10, 0.0).action == PASS
    assert throttle.admit(10, 0.0).action == PASS  # the burst of 2
    verdict = throttle.admit(10, 0.0)
    assert (verdict.action, verdict.limit, verdict.wait) == (THROTTLE, "messages", 0.5)
    assert throttle.admit(10, 0.5).action == THROTTLE  # refilled 1, took 1: still 1 behind
    assert throttle.admit(10, 0.5).action == THROTTLE  # 2 behind: a whole bucket, not more
    verdict = throttle.admit(10, 0.5)
    assert (verdict.action, verdict.limit) == (CLOSE, "messages")
    bytes_only = Throttle(RateLimitSettings(max_byte_rate=100, burst=1), now=0.0)
    assert bytes_only.admit(100, 0.0).action == PASS
    verdict = bytes_only.admit(50, 0.0)
    assert (verdict.action, verdict.limit, verdict.wait) == (THROTTLE, "bytes", 0.5)
    assert bytes_only.wait(0.25) == pytest.approx(0.25)
    assert bytes_only.admit(200, 0.5).action == CLOSE
