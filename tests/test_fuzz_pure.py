"""Property tests (hypothesis) of the pure parts: deflate negotiation, the origin policy, serializers.

Each property says what any input may produce: a valid answer or one of the
documented error types, never another exception. Budgets and the switches
for longer runs are in tests/fuzz_support.py.
"""

from __future__ import annotations

import json

import msgpack
from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from fuzz_support import fuzz_settings
from hypothesis import assume, given
from hypothesis import strategies as st

from wskit.compression import ServerCompression, available_codecs
from wskit.deflate import (
    KNOWN_PARAMETERS,
    MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
    DeflateParameterError,
    DeflateParams,
    DeflatePolicy,
    check_response,
    negotiate_offers,
    parse_params,
)
from wskit.origin import OriginPolicy
from wskit.serializers import SERIALIZERS, DecodeError
from wskit.settings import CompressionSettings

JSON, MSGPACK = SERIALIZERS["json"], SERIALIZERS["msgpack"]


def parse_extensions(header: str):
    """Autobahn's own Sec-WebSocket-Extensions parser (what the server sees; it uses no state)."""
    return WebSocketProtocol._parseExtensionsHeader(None, header)


# -- permessage-deflate negotiation ----------------------------------------------------------

PARAM_NAMES = st.one_of(
    st.sampled_from(KNOWN_PARAMETERS + ("x_unknown", "server_max_window_bits ", "", "Server_No_Context_Takeover")),
    st.text(max_size=10),
)
PARAM_VALUES = st.one_of(
    st.just(True),
    st.sampled_from(["8", "9", "10", "12", "15", "16", "7", "08", "0", "", "-9", " 9", "1e1", "\uff19", "15 "]),
    st.text(max_size=6),
)
RAW_PARAMS = st.dictionaries(PARAM_NAMES, st.lists(PARAM_VALUES, max_size=3), max_size=5)
POLICIES = st.builds(
    DeflatePolicy,
    server_max_window_bits=st.integers(9, 15),
    client_max_window_bits=st.integers(9, 15),
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
)


def check_agreement_against_offer(raw_offer, agreement) -> None:
    """The server's answer is one a client that sent ``raw_offer`` accepts, and both ends
    then use windows the other can read."""
    offer = parse_params(raw_offer, is_response=False)
    ((name, response_params),) = parse_extensions(agreement.response.header_value())
    assert name == "permessage-deflate"
    client = check_response(offer, response_params, DeflatePolicy())
    # What the server compresses with, the client can inflate (and the other way round).
    assert agreement.server_max_window_bits <= client.server_max_window_bits
    assert client.client_max_window_bits <= agreement.client_max_window_bits
    for bits in (agreement.server_max_window_bits, agreement.client_max_window_bits):
        assert MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS


@fuzz_settings(300)
@given(offers=st.lists(RAW_PARAMS, max_size=4), policy=POLICIES)
def test_negotiate_offers_accepts_the_first_valid_offer_or_declines_all(offers, policy):
    result = negotiate_offers(offers, policy)
    declined = [index for index, _reason in result.declined]
    if result.agreement is None:
        assert result.index is None and declined == list(range(len(offers)))
        return
    assert declined == list(range(result.index))
    assert result.agreement.server_max_window_bits <= policy.server_max_window_bits
    check_agreement_against_offer(offers[result.index], result.agreement)


@fuzz_settings(300)
@given(params=RAW_PARAMS, is_response=st.booleans())
def test_parse_params_raises_only_deflate_parameter_error(params, is_response):
    try:
        parsed = parse_params(params, is_response=is_response)
    except DeflateParameterError:
        return
    # What parses is written back as the same parameters.
    ((_, again),) = parse_extensions(parsed.header_value())
    assert parse_params(again, is_response=is_response) == parsed


VALID_OFFERS = st.builds(
    DeflateParams,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.one_of(st.none(), st.integers(MIN_WINDOW_BITS, MAX_WINDOW_BITS)),
    client_max_window_bits=st.one_of(st.none(), st.just(True), st.integers(MIN_WINDOW_BITS, MAX_WINDOW_BITS)),
)


@fuzz_settings(300)
@given(sent=VALID_OFFERS, response=RAW_PARAMS, policy=POLICIES)
def test_check_response_raises_only_deflate_parameter_error(sent, response, policy):
    try:
        agreement = check_response(sent, response, policy)
    except DeflateParameterError:
        return
    if sent.server_max_window_bits is not None:
        assert agreement.server_max_window_bits <= sent.server_max_window_bits
    assert MIN_WINDOW_BITS <= agreement.client_max_window_bits <= policy.client_max_window_bits


def extension_header_pieces():
    """Sec-WebSocket-Extensions values built from plausible pieces, plus noise."""
    token = st.one_of(st.sampled_from(["permessage-deflate", "permessage-bzip2", "permessage-snappy",
                                       "x-webkit-deflate-frame", "PerMessage-Deflate", "foo"]),
                      st.text(max_size=8))
    value = st.one_of(st.none(), st.sampled_from(["9", "15", "8", '"10"', '"', "=", "16"]), st.text(max_size=5))
    param = st.tuples(st.one_of(st.sampled_from(KNOWN_PARAMETERS), st.text(max_size=8)), value).map(
        lambda kv: kv[0] if kv[1] is None else f"{kv[0]}={kv[1]}")
    extension = st.tuples(token, st.lists(param, max_size=4)).map(lambda e: "; ".join([e[0], *e[1]]))
    return st.one_of(st.lists(extension, max_size=4).map(", ".join), st.text(max_size=60))


@fuzz_settings(300)
@given(header=extension_header_pieces(), all_codecs=st.booleans(), enabled=st.booleans())
def test_any_extensions_header_gets_a_valid_answer_or_a_decline(header, all_codecs, enabled):
    settings = CompressionSettings(enabled=enabled, codecs=available_codecs() if all_codecs else ("permessage-deflate",))
    extensions = parse_extensions(header)
    choice = ServerCompression(settings).choose(extensions)
    # Extensions Autobahn cannot load (no codec library) are not compression to it: it ignores them.
    chosen = [name for name, _ in choice.extensions if name in PERMESSAGE_COMPRESSION_EXTENSION]
    assert len(chosen) <= 1, "at most one compression extension is ever shown to Autobahn"
    if choice.agreement is not None:
        deflate_offers = [params for name, params in extensions if name == "permessage-deflate"]
        accepted = next(p for p in deflate_offers if _parses(p))
        check_agreement_against_offer(accepted, choice.agreement)
    if not enabled:
        assert choice.accept is None and not chosen


def _parses(params) -> bool:
    try:
        parse_params(params, is_response=False)
    except DeflateParameterError:
        return False
    return True


# -- origin policy ----------------------------------------------------------------------------

HOST_NAMES = st.one_of(
    st.sampled_from(["127.0.0.1", "localhost", "app.localhost", "[::1]", "example.com", "evil.example",
                     "EXAMPLE.com", "127.1", "[::ffff:127.0.0.1]", "xn--bcher-kva.example", ""]),
    st.text(max_size=12),
)
PORT_TEXT = st.one_of(st.integers(-1, 70000).map(str), st.sampled_from(["", "080", "\u00b2", "\u0661", "0x50"]))


@st.composite
def origins(draw):
    kind = draw(st.sampled_from(["url", "url", "null", "text"]))
    if kind == "null":
        return draw(st.sampled_from(["null", "NULL", " null "]))
    if kind == "text":
        return draw(st.text(max_size=30))
    scheme = draw(st.sampled_from(["http", "https", "ws", "file", "chrome-extension", ""]))
    port = draw(st.one_of(st.none(), PORT_TEXT))
    path = draw(st.sampled_from(["", "/", "/x"]))
    return f"{scheme}://{draw(HOST_NAMES)}" + (f":{port}" if port is not None else "") + path


@st.composite
def host_headers(draw):
    if draw(st.booleans()):
        return draw(st.one_of(st.none(), st.text(max_size=25)))
    port = draw(st.one_of(st.none(), PORT_TEXT))
    return draw(HOST_NAMES) + (f":{port}" if port is not None else "")


@fuzz_settings(500)
@given(origin=st.one_of(st.none(), origins()), host=host_headers(), secure=st.booleans(),
       allowed=st.lists(st.sampled_from(["https://*.example.com", "http://evil.example", "null", "*",
                                         "HTTP://Example.com/", "https://app.example.com:8443"]), max_size=2),
       loopback=st.booleans())
def test_origin_policy_answers_yes_or_no_for_any_headers(origin, host, secure, allowed, loopback):
    policy = OriginPolicy(allowed, allow_loopback=loopback)
    allowed_now = policy.allows(origin, host, secure)  # answers, never raises
    assert isinstance(allowed_now, bool)
    if not origin or "*" in allowed:
        assert allowed_now
    try:
        policy.check(origin, host, secure)
    except ConnectionDeny as deny:
        assert deny.code == 403 and not allowed_now
    else:
        assert allowed_now


@fuzz_settings(200)
@given(host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True),
       port=st.integers(1, 65535), other=st.sampled_from(["evil.example", "attacker.test"]),
       scheme=st.sampled_from(["http", "https"]))
def test_origin_policy_same_origin_and_cross_origin(host, port, other, scheme):
    policy = OriginPolicy()
    assert policy.allows(f"{scheme}://{host}:{port}", f"{host}:{port}")
    assume(other != host)
    assert not policy.allows(f"{scheme}://{other}:{port}", f"{host}:{port}")
    assert not policy.allows("null", f"{host}:{port}")
    assert policy.allows(f"{scheme}://localhost:{port}", f"{host}:{port}")


# -- serializers ---------------------------------------------------------------------------------

MSGPACK_INT = st.integers(-(2**63), 2**64 - 1)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=20)
MSGPACK_KEYS = st.one_of(st.text(max_size=6), MSGPACK_INT, st.binary(max_size=4), st.none(), st.booleans(),
                         st.floats(allow_nan=False))
MSGPACK_SCALARS = st.one_of(st.none(), st.booleans(), MSGPACK_INT, st.floats(), st.text(max_size=12),
                            st.binary(max_size=12))
MSGPACK_VALUES = st.recursive(MSGPACK_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(MSGPACK_KEYS, inner, max_size=4)), max_leaves=20)


def check_decodes_or_refuses(serializer, payload: bytes) -> None:
    """Any payload: a message or DecodeError; a message encodes again with both serializers
    (serializers.py: "Whatever decodes therefore encodes again with both serializers")."""
    try:
        value = serializer.decode(payload)
    except DecodeError:
        return
    for other in (JSON, MSGPACK):
        other.encode(value)  # whatever decodes encodes again with the other serializer


@fuzz_settings(500)
@given(payload=st.binary(max_size=200))
def test_any_bytes_decode_to_a_message_or_decode_error(payload):
    for serializer in (JSON, MSGPACK):
        check_decodes_or_refuses(serializer, payload)


@fuzz_settings(300)
@given(value=JSON_VALUES, ascii_only=st.booleans(), noise=st.binary(max_size=3), cut=st.integers(0, 400))
def test_json_text_decodes_or_refuses(value, ascii_only, noise, cut):
    text = json.dumps(value, ensure_ascii=ascii_only)  # NaN and Infinity included, as a peer may send
    payload = text.encode("utf-8", "surrogatepass")
    check_decodes_or_refuses(JSON, payload)
    check_decodes_or_refuses(JSON, payload[:cut] + noise)  # truncated or damaged


@fuzz_settings(300)
@given(value=MSGPACK_VALUES, noise=st.binary(max_size=3), cut=st.integers(0, 400))
def test_msgpack_decodes_or_refuses(value, noise, cut):
    try:
        payload = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        assume(False)
    check_decodes_or_refuses(MSGPACK, payload)
    check_decodes_or_refuses(MSGPACK, payload[:cut] + noise)


@fuzz_settings(200)
@given(value=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=10).filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.text(max_size=5).filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s)), inner, max_size=4)),
    max_leaves=15))
def test_plain_values_round_trip_through_both_serializers(value):
    for serializer in (JSON, MSGPACK):
        assert serializer.decode(serializer.encode(value)) == value


def test_the_fuzzers_findings_are_answered():
    """The minimal examples of what the fuzzers found (docs/reliability.md, "Findings")."""
    check_decodes_or_refuses(JSON, b"NaN")
    check_decodes_or_refuses(JSON, b"1e400")
    check_decodes_or_refuses(JSON, b"18446744073709551616")
    check_decodes_or_refuses(MSGPACK, b"\x81\xc4\x00\x00")
    assert OriginPolicy().allows("http://a:99999", "a") is False
