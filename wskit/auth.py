"""Authentication and authorization: JWTs at the handshake, permissions per action.

Backend-neutral and free of I/O once built (key files are read when a
:class:`TokenVerifier` is created). The server side is wired in by
:mod:`wskit.guard`; the shipped subprotocols ask an :class:`Authorizer`
before each action.

A token is a JWT (RFC 7519) signed with the server's shared secret (HS256) or
with a private key whose public half the server holds (RS256, ES256, EdDSA).
Its claims name the user (``sub``, ``name``) and what they may do, in a
``wskit`` claim of glob patterns per action::

    {"sub": "alice", "name": "Alice", "exp": 1764032400,
     "wskit": {"join": ["room-*"], "subscribe": ["ticks.*"], "publish": [], "call": ["*"]}}

**Patterns.** ``*`` matches any run of characters, dots included; every
other character matches itself (there is no ``?`` or ``[...]``). ``room-*``
allows ``room-a``; ``ticks.*`` allows ``ticks.demo`` and ``ticks.fx.EURUSD``;
``*`` allows everything. A missing action, an empty list or a token without a
``wskit`` claim allows nothing: with authentication on, what a token does not
grant is denied.

>>> Permissions.from_claim({"join": ["room-*"]}).allows("join", "room-a")
True
>>> Permissions.from_claim({"join": ["room-*"]}).allows("join", "lobby")
False
>>> Permissions.from_claim({"join": ["room-*"]}).allows("publish", "ticks.demo")
False
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .errors import SettingsError
from .settings import HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS, AuthSettings

# What a token may grant, by action (the keys of the ``wskit`` claim).
ACTIONS = ("join", "subscribe", "publish", "call")
PERMISSIONS_CLAIM = "wskit"
QUERY_PARAMETER = "token"
# RFC 7518 3.2: an HMAC key should be at least as long as the hash.
MIN_SECRET_BYTES = 32


class InvalidToken(Exception):
    """A token that does not authenticate; the message is safe to log and send
    (it never quotes the token or anything taken from it)."""


# -- glob patterns ----------------------------------------------------------------


def glob_match(pattern: str, text: str) -> bool:
    """Does ``pattern`` (``*`` = any run of characters, dots included) match ``text``?

    >>> glob_match("room-*", "room-a"), glob_match("ticks.*", "ticks.fx.EURUSD"), glob_match("a?", "ab")
    (True, True, False)
    """
    return _covers(pattern, list(text))


_WILD = object()  # a wildcard of a subscription pattern: stands for any non-empty text


def _subscription_tokens(pattern: str) -> list[Any]:
    """A pubsub subscription pattern as characters and :data:`_WILD` (one per ``*`` or ``**`` segment)."""
    tokens: list[Any] = []
    for i, segment in enumerate(pattern.split(".")):
        if i:
            tokens.append(".")
        if segment in ("*", "**"):
            tokens.append(_WILD)
        else:
            tokens.extend(segment)
    return tokens


def _covers(pattern: str, tokens: list[Any]) -> bool:
    """Does the glob ``pattern`` match every text ``tokens`` can stand for?

    ``tokens`` are characters and :data:`_WILD` markers; a marker may be any
    text, so only a ``*`` of the pattern can take it. Dynamic programming
    over (pattern position, token position), like fnmatch without ``?``/``[``.
    """
    n = len(tokens)
    reach = [False] * (n + 1)  # which token prefixes the pattern prefix so far matches
    reach[0] = True
    for p in pattern:
        if p == "*":
            for j in range(1, n + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            for j in range(n, 0, -1):
                reach[j] = reach[j - 1] and tokens[j - 1] is not _WILD and tokens[j - 1] == p
            reach[0] = False
    return reach[n]


def pattern_covers(glob: str, subscription: str) -> bool:
    """Is every topic the pubsub ``subscription`` (``*`` = one segment, final
    ``**`` = one or more) can match allowed by the permission ``glob``?

    >>> pattern_covers("ticks.*", "ticks.*"), pattern_covers("ticks.*", "**"), pattern_covers("ticks.a*", "ticks.*")
    (True, False, False)
    """
    return _covers(glob, _subscription_tokens(subscription))


def is_subscription_pattern(topic: str) -> bool:
    return "*" in topic


# -- identity and permissions -------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    """Glob patterns per action, from a token's ``wskit`` claim. What is not listed is denied."""

    grants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_claim(cls, claim: Any) -> Permissions:
        """Parse a ``wskit`` claim; :class:`InvalidToken` when it is not an object of string lists."""
        if claim is None:
            return cls({})
        if not isinstance(claim, Mapping):
            raise InvalidToken(f"the {PERMISSIONS_CLAIM!r} claim must be an object")
        grants: dict[str, tuple[str, ...]] = {}
        for action in ACTIONS:
            patterns = claim.get(action, [])
            if isinstance(patterns, str):
                patterns = [patterns]
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise InvalidToken(f"{PERMISSIONS_CLAIM}.{action} must be a list of patterns")
            grants[action] = tuple(patterns)
        return cls(grants)

    def allows(self, action: str, target: str) -> bool:
        """May ``action`` be done on ``target``? A subscription pattern needs a
        permission covering every topic it can match."""
        patterns = self.grants.get(action, ())
        if action == "subscribe" and is_subscription_pattern(target):
            return any(pattern_covers(p, target) for p in patterns)
        return any(glob_match(p, target) for p in patterns)


@dataclass(frozen=True)
class Identity:
    """Who a server connection belongs to: the verified claims of its token.

    Handlers read it as ``self.connection.identity`` (None when authentication is off).
    """

    sub: str | None
    name: str | None
    permissions: Permissions
    claims: Mapping[str, Any]
    expires: float | None = None

    @property
    def display_name(self) -> str | None:
        """What to call the user: the ``name`` claim, else ``sub``."""
        return self.name or self.sub

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Identity:
        sub, name, exp = claims.get("sub"), claims.get("name"), claims.get("exp")
        if sub is not None and not isinstance(sub, str):
            raise InvalidToken("the 'sub' claim must be a string")
        if name is not None and not isinstance(name, str):
            raise InvalidToken("the 'name' claim must be a string")
        expires = None
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            try:
                expires = float(exp)
            except OverflowError:  # an exp beyond any float: as good as never
                expires = None
        return cls(sub, name, Permissions.from_claim(claims.get(PERMISSIONS_CLAIM)), dict(claims), expires)


# -- verification -----------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SettingsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def public_key_algorithms(key: Any) -> tuple[str, ...]:
    """The algorithm a public key verifies by default (RSA: RS256; EC: by curve; Ed25519/Ed448: EdDSA)."""
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256",)
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        alg = by_curve.get(key.curve.name)
        if alg is None:
            raise SettingsError(f"unsupported EC curve {key.curve.name} (use P-256, P-384 or P-521)")
        return (alg,)
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ("EdDSA",)
    raise SettingsError(f"unsupported public key type {type(key).__name__}")


def private_key_algorithm(key: Any) -> str:
    """The algorithm ``wskit token`` signs with for a private key (its public half's default)."""
    return public_key_algorithms(key.public_key())[0]


# PyJWT's exceptions, as the one line a refusal says (never with token text in it).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf)"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidIssuedAtError, "bad iat claim"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.DecodeError, "malformed token"),
)


class TokenVerifier:
    """Checks tokens against :class:`AuthSettings`; built once per server.

    The key is chosen by the token's algorithm among the configured ones
    only: an HMAC token is checked with the secret, any other with the public
    key, so a public key can never be used as an HMAC secret.
    """

    def __init__(self, settings: AuthSettings):
        self.settings = settings
        secret = settings.secret
        if settings.secret_file:
            secret = _read(settings.secret_file, "auth secret file").decode("utf-8", "replace").strip()
            if not secret:
                raise SettingsError(f"auth secret file {settings.secret_file} is empty")
        self.secret: bytes | None = secret.encode("utf-8") if secret else None
        self.public_key: Any = None
        key_algorithms: tuple[str, ...] = ()
        if settings.public_key_file:
            pem = _read(settings.public_key_file, "auth public key")
            try:
                self.public_key = load_pem_public_key(pem)
            except ValueError as exc:
                raise SettingsError(f"{settings.public_key_file} is not a PEM public key ({exc})") from None
            key_algorithms = public_key_algorithms(self.public_key)
        if settings.algorithms:
            algorithms = tuple(settings.algorithms)
        else:
            algorithms = (("HS256",) if self.secret else ()) + key_algorithms
        self.algorithms = algorithms
        self.short_secret = self.secret is not None and len(self.secret) < MIN_SECRET_BYTES

    def verify(self, token: str) -> Identity:
        """The :class:`Identity` a valid token carries; :class:`InvalidToken` (a safe reason) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            shown = alg if alg in ("none", *HMAC_ALGORITHMS, *PUBLIC_KEY_ALGORITHMS) else "other"
            raise InvalidToken(f"token algorithm {shown!r} not allowed "
                               f"(accepted: {', '.join(self.algorithms)})")
        key = self.secret if alg in HMAC_ALGORITHMS else self.public_key
        settings = self.settings
        try:
            with warnings.catch_warnings():
                # A short secret is reported once when the server starts, not per token.
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token, key, algorithms=[alg], audience=settings.audience, issuer=settings.issuer,
                    leeway=settings.leeway, options={"require": list(settings.required_claims)},
                )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            for kind, reason in _REASONS:
                if isinstance(exc, kind):
                    raise InvalidToken(reason) from None
            raise InvalidToken("invalid token") from None
        return Identity.from_claims(claims)


def token_from_request(headers: Mapping[str, str], params: Mapping[str, list[str]],
                       query_token: bool = True) -> str | None:
    """The bearer token of a handshake: ``Authorization: Bearer <token>``, else
    (if allowed) the ``token`` query parameter; None when there is none."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    if query_token:
        values = params.get(QUERY_PARAMETER) or []
        if values and values[0]:
            return values[0]
    return None


_QUERY_TOKEN = re.compile(r"([?&]" + QUERY_PARAMETER + r"=)[^&\s\"#]*")


def redact_query_token(text: str) -> str:
    """``text`` (a URL, an access-log line) with the value of any ``token=`` query parameter hidden.

    >>> redact_query_token('"GET /ws?a=1&token=eyJhbGciOi.x.y HTTP/1.1" 101')
    '"GET /ws?a=1&token=[redacted] HTTP/1.1" 101'
    """
    return _QUERY_TOKEN.sub(r"\1[redacted]", text)


def issue_token(key: Any, sub: str, *, name: str | None = None, ttl: float | None = 3600,
                permissions: Mapping[str, Iterable[str]] | None = None, algorithm: str = "HS256",
                audience: str | None = None, issuer: str | None = None,
                claims: Mapping[str, Any] | None = None, now: float | None = None) -> str:
    """A signed token for ``sub`` (what ``wskit token`` prints).

    ``key`` is the shared secret (HS256) or a PEM private key (RS256, ES256, ...).

    >>> token = issue_token("a-long-enough-shared-secret-for-hs256!", "alice", name="Alice",
    ...                     permissions={"join": ["room-*"]})
    >>> settings = AuthSettings(secret="a-long-enough-shared-secret-for-hs256!")
    >>> TokenVerifier(settings).verify(token).display_name
    'Alice'
    """
    issued = int(now if now is not None else time.time())
    payload: dict[str, Any] = {"sub": sub, "iat": issued}
    if name is not None:
        payload["name"] = name
    if ttl:
        payload["exp"] = issued + int(ttl)
    if audience is not None:
        payload["aud"] = audience
    if issuer is not None:
        payload["iss"] = issuer
    if permissions is not None:
        payload[PERMISSIONS_CLAIM] = {action: list(patterns) for action, patterns in permissions.items()}
    payload.update(claims or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, key, algorithm=algorithm)


# -- authorization ----------------------------------------------------------------------


class Authorizer:
    """Decides each action of a connection: the policy hook if there is one,
    else the token's permissions (everything is allowed with authentication off).

    :meth:`check` returns True/False, or whatever the hook returned when that
    is not a bool (a Deferred, a future, a coroutine: the caller waits for it).
    """

    def __init__(self, settings: AuthSettings):
        self.settings = settings
        self.enabled = settings.enabled
        self.policy = settings.authorize

    @property
    def active(self) -> bool:
        """False when every action is allowed (no authentication, no hook): handlers skip the check."""
        return self.enabled or self.policy is not None

    def check(self, identity: Identity | None, action: str, target: str) -> Any:
        if self.policy is not None:
            return self.policy(identity, action, target)
        if not self.enabled:
            return True
        if identity is None:
            return False
        return identity.permissions.allows(action, target)


__all__ = [
    "ACTIONS",
    "Authorizer",
    "Identity",
    "InvalidToken",
    "Permissions",
    "TokenVerifier",
    "glob_match",
    "issue_token",
    "pattern_covers",
    "redact_query_token",
    "token_from_request",
]
