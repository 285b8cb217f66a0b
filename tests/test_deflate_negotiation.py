"""permessage-deflate negotiation (RFC 7692 section 7), pure and table-tested.

Offers and responses are written as header values and parsed by Autobahn's own
header parser, exactly as the protocols see them.
"""

from __future__ import annotations

import itertools
import os
import zlib

import pytest
from autobahn.websocket.compress import PerMessageDeflate
from autobahn.websocket.protocol import WebSocketProtocol

from wskit.compression import (
    NegotiatedDeflateOfferAccept,
    NegotiatedDeflateResponseAccept,
    ServerCompression,
    TunedPerMessageDeflate,
    make_client_accept,
    tune_extension,
)
from wskit.deflate import (
    DeflateParameterError,
    DeflateParams,
    DeflatePolicy,
    check_response,
    client_offer,
    negotiate_offers,
    parse_params,
    zlib_compress_window,
    zlib_inflate_window,
)
from wskit.settings import CompressionSettings


def parse_header(header: str) -> list[tuple[str, dict]]:
    # Autobahn's parser does not use its instance.
    return WebSocketProtocol._parseExtensionsHeader(None, header)


def deflate_offers(header: str) -> list[dict]:
    return [params for name, params in parse_header(header) if name == "permessage-deflate"]


def response_of(header: str, policy: DeflatePolicy) -> str | None:
    result = negotiate_offers(deflate_offers(header), policy)
    return result.agreement.response.header_value() if result.agreement else None


DEFAULT = DeflatePolicy.from_settings(CompressionSettings())  # 12 / 12, context takeover on both sides
SERVER_15 = DeflatePolicy.from_settings(CompressionSettings(server_max_window_bits=15))
CLIENT_15 = DeflatePolicy.from_settings(CompressionSettings(client_max_window_bits=15))
SERVER_RESETS = DeflatePolicy.from_settings(CompressionSettings(server_no_context_takeover=True))
BOTH_15 = DeflatePolicy.from_settings(CompressionSettings(server_max_window_bits=15, client_max_window_bits=15))
POLICIES = {"default": DEFAULT, "server15": SERVER_15, "client15": CLIENT_15, "server_resets": SERVER_RESETS,
            "both15": BOTH_15}

PD = "permessage-deflate"


# -- the table: offer -> response ---------------------------------------------------------------

@pytest.mark.parametrize(
    "policy, offer, response",
    [
        # No parameters: the client may use any window; the server says what it compresses with.
        ("default", PD, f"{PD}; server_max_window_bits=12"),
        ("server15", PD, PD),
        ("both15", PD, PD),
        # client_max_window_bits without value: the server picks its configured window.
        ("default", f"{PD}; client_max_window_bits", f"{PD}; server_max_window_bits=12; client_max_window_bits=12"),
        ("client15", f"{PD}; client_max_window_bits", f"{PD}; server_max_window_bits=12"),
        # With a value N: never more than N (Node's ws with clientMaxWindowBits: 10 aborts otherwise).
        ("default", f"{PD}; client_max_window_bits=10", f"{PD}; server_max_window_bits=12; client_max_window_bits=10"),
        ("default", f"{PD}; client_max_window_bits=8", f"{PD}; server_max_window_bits=12; client_max_window_bits=8"),
        ("default", f"{PD}; client_max_window_bits=15", f"{PD}; server_max_window_bits=12; client_max_window_bits=12"),
        ("client15", f"{PD}; client_max_window_bits=9", f"{PD}; server_max_window_bits=12; client_max_window_bits=9"),
        ("both15", f"{PD}; client_max_window_bits=15", PD),
        # server_max_window_bits: the smaller of the request and the configuration.
        ("default", f"{PD}; server_max_window_bits=14", f"{PD}; server_max_window_bits=12"),
        ("default", f"{PD}; server_max_window_bits=10", f"{PD}; server_max_window_bits=10"),
        ("default", f"{PD}; server_max_window_bits=8", f"{PD}; server_max_window_bits=8"),
        ("server15", f"{PD}; server_max_window_bits=15", f"{PD}; server_max_window_bits=15"),
        ("server15", f"{PD}; server_max_window_bits=9", f"{PD}; server_max_window_bits=9"),
        # Context takeover flags.
        ("default", f"{PD}; server_no_context_takeover",
         f"{PD}; server_no_context_takeover; server_max_window_bits=12"),
        ("default", f"{PD}; client_no_context_takeover", f"{PD}; server_max_window_bits=12"),
        ("server_resets", PD, f"{PD}; server_no_context_takeover; server_max_window_bits=12"),
        # What browsers send, and what Autobahn's clients send.
        ("default", f"{PD}; client_max_window_bits",
         f"{PD}; server_max_window_bits=12; client_max_window_bits=12"),
        ("default", f"{PD}; client_no_context_takeover; client_max_window_bits",
         f"{PD}; server_max_window_bits=12; client_max_window_bits=12"),
        # Node's ws with every option.
        ("default", f"{PD}; server_no_context_takeover; client_no_context_takeover; "
                    "server_max_window_bits=9; client_max_window_bits=8",
         f"{PD}; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8"),
        # Quoted values are values (RFC 6455 extension-param grammar).
        ("default", f'{PD}; server_max_window_bits="10"', f"{PD}; server_max_window_bits=10"),
        # Several offers: the first acceptable one wins; invalid ones are declined, not fatal.
        ("default", f"{PD}; server_max_window_bits=10, {PD}", f"{PD}; server_max_window_bits=10"),
        ("default", f"{PD}; x_unknown, {PD}; client_max_window_bits=9",
         f"{PD}; server_max_window_bits=12; client_max_window_bits=9"),
        ("default", f"{PD}; server_max_window_bits=7, {PD}; server_max_window_bits=8",
         f"{PD}; server_max_window_bits=8"),
        ("default", f"{PD}; server_max_window_bits=10; server_max_window_bits=10, {PD}; client_max_window_bits",
         f"{PD}; server_max_window_bits=12; client_max_window_bits=12"),
        # Nothing acceptable: no extension (the handshake itself goes on).
        ("default", f"{PD}; x_unknown", None),
        ("default", f"{PD}; server_max_window_bits", None),
        ("default", f"{PD}; server_max_window_bits=16", None),
        ("default", f"{PD}; server_max_window_bits=08", None),
        ("default", f"{PD}; server_max_window_bits=", None),
        ("default", f"{PD}; client_max_window_bits=7", None),
        ("default", f"{PD}; client_max_window_bits=abc", None),
        ("default", f"{PD}; client_max_window_bits=+9", None),
        ("default", f"{PD}; server_no_context_takeover=1", None),
        ("default", f"{PD}; client_no_context_takeover; client_no_context_takeover", None),
        ("default", f"{PD}; client_max_window_bits; client_max_window_bits=10", None),
        ("default", f"{PD}; x_a, {PD}; x_b", None),
    ],
)
def test_offer_to_response_table(policy, offer, response):
    assert response_of(offer, POLICIES[policy]) == response


def test_declined_offers_say_why_and_the_fallback_is_taken():
    result = negotiate_offers(
        deflate_offers(f"{PD}; x_unknown, {PD}; server_max_window_bits=16, {PD}; client_max_window_bits; "
                       f"client_max_window_bits, {PD}"),
        DEFAULT,
    )
    assert result.index == 3
    assert [reason for _, reason in result.declined] == [
        "unknown parameter 'x_unknown'",
        "invalid value '16' for 'server_max_window_bits' (expected 8-15)",
        "parameter 'client_max_window_bits' appears 2 times",
    ]


# -- exhaustive: every offer shape x several server configurations --------------------------------

CLIENT_WINDOW = [None, True, *range(8, 16)]
SERVER_WINDOW = [None, *range(8, 16)]
FLAGS = [False, True]


def offer_header(client_bits, server_bits, server_nct, client_nct) -> str:
    return DeflateParams(server_nct, client_nct, server_bits, client_bits).header_value()


def expected_response(policy: DeflatePolicy, client_bits, server_bits, server_nct) -> DeflateParams:
    """RFC 7692 section 7, restated per parameter."""
    server_window = min(policy.server_max_window_bits, server_bits or 15)
    if client_bits is None:
        client_answer = None  # 7.1.2.2: MUST NOT be in the response
    else:
        limit = policy.client_max_window_bits
        if client_bits is not True:
            limit = min(limit, client_bits)
        client_answer = limit if limit < 15 else None
    return DeflateParams(
        server_no_context_takeover=server_nct or policy.server_no_context_takeover,
        client_no_context_takeover=policy.client_no_context_takeover,
        server_max_window_bits=server_window if server_window < 15 or server_bits else None,
        client_max_window_bits=client_answer,
    )


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("client_nct", FLAGS, ids=["", "cnct"])
@pytest.mark.parametrize("server_nct", FLAGS, ids=["", "snct"])
@pytest.mark.parametrize("server_bits", SERVER_WINDOW, ids=lambda v: f"smwb={v}")
@pytest.mark.parametrize("client_bits", CLIENT_WINDOW, ids=lambda v: f"cmwb={v}")
def test_every_offer_shape(policy_name, client_bits, server_bits, server_nct, client_nct):
    policy = POLICIES[policy_name]
    header = offer_header(client_bits, server_bits, server_nct, client_nct)
    result = negotiate_offers(deflate_offers(header), policy)
    assert result.agreement is not None and result.declined == ()
    agreement = result.agreement
    response = agreement.response
    assert response == expected_response(policy, client_bits, server_bits, server_nct)

    # The response obeys the offer.
    if server_bits is not None:
        assert response.server_max_window_bits is not None and response.server_max_window_bits <= server_bits
    if client_bits is None:
        assert response.client_max_window_bits is None
    elif client_bits is not True and response.client_max_window_bits is not None:
        assert response.client_max_window_bits <= client_bits
    if server_nct:
        assert response.server_no_context_takeover
    # It states every window below 15 the server compresses with.
    assert (response.server_max_window_bits or 15) == agreement.server_max_window_bits

    # A client that sent this offer accepts the response and ends up with the same agreement.
    wire = parse_header(response.header_value())
    assert [name for name, _ in wire] == [PD]
    offer = parse_params(deflate_offers(header)[0], is_response=False)
    client_side = check_response(offer, wire[0][1], DeflatePolicy())
    assert client_side.server_max_window_bits == agreement.server_max_window_bits
    assert client_side.server_no_context_takeover == agreement.server_no_context_takeover
    assert client_side.client_no_context_takeover == agreement.client_no_context_takeover
    # The client compresses within what the server inflates with.
    assert client_side.client_max_window_bits <= agreement.client_max_window_bits


@pytest.mark.parametrize("policy_name", ["default", "server15", "server_resets"])
@pytest.mark.parametrize("server_bits", SERVER_WINDOW, ids=lambda v: f"smwb={v}")
@pytest.mark.parametrize("client_bits", [None, True, 8, 9, 12, 15], ids=lambda v: f"cmwb={v}")
def test_negotiated_extensions_carry_messages_both_ways(policy_name, client_bits, server_bits):
    """Autobahn extension objects built from both sides' agreements exchange messages, and each
    end's output inflates with a strict inflater of the window the other end was promised."""
    policy = POLICIES[policy_name]
    header = offer_header(client_bits, server_bits, False, False)
    agreement = negotiate_offers(deflate_offers(header), policy).agreement
    server = PerMessageDeflate.create_from_offer_accept(True, NegotiatedDeflateOfferAccept(agreement, 5))
    tune_extension(server, CompressionSettings(), agreement)
    offer = parse_params(deflate_offers(header)[0], is_response=False)
    client_agreement = check_response(offer, parse_header(agreement.response.header_value())[0][1], DeflatePolicy())
    client = PerMessageDeflate.create_from_response_accept(
        False, NegotiatedDeflateResponseAccept(client_agreement, 5))
    tune_extension(client, CompressionSettings(), client_agreement)

    for message in MESSAGES * 2:
        assert decompress(client, compress(server, message)) == message
        assert decompress(server, compress(client, message)) == message
    # A first message (no context yet) stays within the window each end announced.
    server_fresh = PerMessageDeflate.create_from_offer_accept(True, NegotiatedDeflateOfferAccept(agreement, 5))
    tune_extension(server_fresh, CompressionSettings(), agreement)
    assert strict_inflate(compress(server_fresh, MESSAGES[1]), agreement.server_max_window_bits) == MESSAGES[1]
    client_fresh = PerMessageDeflate.create_from_response_accept(
        False, NegotiatedDeflateResponseAccept(client_agreement, 5))
    tune_extension(client_fresh, CompressionSettings(), client_agreement)
    assert strict_inflate(compress(client_fresh, MESSAGES[1]), client_agreement.client_max_window_bits) == MESSAGES[1]


# -- window bits 8 ---------------------------------------------------------------------------------

_BLOCK = os.urandom(400)
MESSAGES = [
    b'{"type": "message", "room": "lobby", "text": "hello hello hello"}' * 20,
    (_BLOCK * 3 + b"a" * 300) * 4,  # repeats 400 bytes apart: beyond a 256-byte window
    os.urandom(3000),
]


def compress(pmce, payload: bytes) -> bytes:
    pmce.start_compress_message()
    return pmce.compress_message_data(payload) + pmce.end_compress_message()


def decompress(pmce, data: bytes) -> bytes:
    pmce.start_decompress_message()
    out = pmce.decompress_message_data(data)
    pmce.end_decompress_message()
    return out


def strict_inflate(data: bytes, window_bits: int) -> bytes:
    """Inflate with a ``window_bits`` window, in small output steps.

    zlib only checks a distance against the window when it reaches beyond the
    output of the current call, so a one-shot inflate would accept distances
    a real ``window_bits`` peer (fed from the network) rejects.
    """
    inflater = zlib.decompressobj(-window_bits)
    out, rest = [], data + b"\x00\x00\xff\xff"
    while rest:
        out.append(inflater.decompress(rest, 16))
        rest = inflater.unconsumed_tail
    return b"".join(out)


def test_strict_inflater_rejects_distances_beyond_its_window():
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(MESSAGES[1]) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    with pytest.raises(zlib.error, match="too far back"):
        strict_inflate(data, 8)
    assert strict_inflate(data, 15) == MESSAGES[1]


def test_zlib_cannot_compress_raw_deflate_with_8_bits():
    with pytest.raises(ValueError):
        zlib.compressobj(6, zlib.DEFLATED, -8)
    assert zlib_compress_window(8) == (9, zlib.Z_RLE)
    assert zlib_compress_window(12) == (12, zlib.Z_DEFAULT_STRATEGY)
    assert zlib_inflate_window(8) == 9 and zlib_inflate_window(13) == 13


@pytest.mark.parametrize("context_takeover", [True, False])
def test_server_window_8_output_inflates_with_an_8_bit_window(context_takeover):
    agreement = negotiate_offers(
        deflate_offers(f"{PD}; server_max_window_bits=8"
                       + ("" if context_takeover else "; server_no_context_takeover")),
        DEFAULT,
    ).agreement
    assert agreement.response.server_max_window_bits == 8
    server = PerMessageDeflate.create_from_offer_accept(True, NegotiatedDeflateOfferAccept(agreement, 5))
    tune_extension(server, CompressionSettings(), agreement)
    assert isinstance(server, TunedPerMessageDeflate) and server.server_max_window_bits == 8
    inflater = zlib.decompressobj(-8)
    for message in MESSAGES * 2:
        data = compress(server, message)
        if context_takeover:
            out, rest = [], data + b"\x00\x00\xff\xff"
            while rest:
                out.append(inflater.decompress(rest, 16))
                rest = inflater.unconsumed_tail
            assert b"".join(out) == message
        else:
            assert strict_inflate(data, 8) == message
    # Still compression: run-length and Huffman coding.
    assert len(compress(server, b"a" * 5000)) < 100


def test_client_window_8_is_inflated_with_9_bits():
    """A peer announcing 8 bits may really use zlib's 9 (Node's ws does): read it with 9."""
    agreement = negotiate_offers(deflate_offers(f"{PD}; client_max_window_bits=8"), DEFAULT).agreement
    assert agreement.response.client_max_window_bits == 8
    server = PerMessageDeflate.create_from_offer_accept(True, NegotiatedDeflateOfferAccept(agreement, 5))
    tune_extension(server, CompressionSettings(), agreement)
    peer = zlib.compressobj(6, zlib.DEFLATED, -9)  # what zlib does when asked for 8
    for message in MESSAGES:
        data = peer.compress(message) + peer.flush(zlib.Z_SYNC_FLUSH)[:-4]
        assert decompress(server, data) == message


# -- client side: responses checked against the offer ------------------------------------------------

WSKIT_OFFER = f"{PD}; client_no_context_takeover; client_max_window_bits"


@pytest.mark.parametrize(
    "offer, response, client_window",
    [
        (WSKIT_OFFER, PD, 12),
        (WSKIT_OFFER, f"{PD}; client_max_window_bits=10", 10),
        (WSKIT_OFFER, f"{PD}; client_max_window_bits=8", 8),
        (WSKIT_OFFER, f"{PD}; client_max_window_bits=15", 12),
        (WSKIT_OFFER, f"{PD}; server_max_window_bits=8", 12),  # unrequested: allowed (7.1.2.1)
        (WSKIT_OFFER, f"{PD}; server_no_context_takeover; client_no_context_takeover", 12),
        (f"{PD}; server_max_window_bits=10", f"{PD}; server_max_window_bits=10", 15),
        (f"{PD}; server_max_window_bits=10", f"{PD}; server_max_window_bits=9", 15),
        (f"{PD}; server_no_context_takeover", f"{PD}; server_no_context_takeover", 15),
        (f"{PD}; client_max_window_bits=10", PD, 10),  # our own promise holds
        (f"{PD}; client_max_window_bits=10", f"{PD}; client_max_window_bits=9", 9),
        (f"{PD}; client_max_window_bits", f'{PD}; client_max_window_bits="11"', 11),
    ],
)
def test_valid_responses_are_accepted(offer, response, client_window):
    policy = DeflatePolicy(client_max_window_bits=12 if offer == WSKIT_OFFER else 15)
    agreement = check_response(parse_params(deflate_offers(offer)[0], is_response=False),
                               deflate_offers(response)[0], policy)
    assert agreement.client_max_window_bits == client_window


@pytest.mark.parametrize(
    "offer, response, error",
    [
        (PD, f"{PD}; client_max_window_bits=10", "client_max_window_bits in the response, but the offer did not"),
        (f"{PD}; client_max_window_bits=10", f"{PD}; client_max_window_bits=12",
         "client_max_window_bits=12 is larger than the 10 offered"),
        (WSKIT_OFFER, f"{PD}; client_max_window_bits", "parameter 'client_max_window_bits' needs a value"),
        (f"{PD}; server_max_window_bits=10", f"{PD}; server_max_window_bits=11",
         "server_max_window_bits=11 is larger than the 10 offered"),
        (f"{PD}; server_max_window_bits=10", PD, "server_max_window_bits=10 was offered but is missing"),
        (f"{PD}; server_no_context_takeover", PD, "server_no_context_takeover was offered but is missing"),
        (WSKIT_OFFER, f"{PD}; server_max_window_bits=16", "invalid value '16' for 'server_max_window_bits'"),
        (WSKIT_OFFER, f"{PD}; server_max_window_bits=7", "invalid value '7' for 'server_max_window_bits'"),
        (WSKIT_OFFER, f"{PD}; client_max_window_bits=0", "invalid value '0' for 'client_max_window_bits'"),
        (WSKIT_OFFER, f"{PD}; server_max_window_bits", "parameter 'server_max_window_bits' needs a value"),
        (WSKIT_OFFER, f"{PD}; x_extra", "unknown parameter 'x_extra'"),
        (WSKIT_OFFER, f"{PD}; server_no_context_takeover; server_no_context_takeover",
         "parameter 'server_no_context_takeover' appears 2 times"),
        (WSKIT_OFFER, f"{PD}; client_no_context_takeover=yes", "parameter 'client_no_context_takeover' takes no value"),
    ],
)
def test_invalid_responses_name_the_parameter(offer, response, error):
    with pytest.raises(DeflateParameterError, match=error.replace("(", r"\(")):
        check_response(parse_params(deflate_offers(offer)[0], is_response=False),
                       deflate_offers(response)[0], DeflatePolicy())


@pytest.mark.parametrize("server_window", [None, *range(8, 16)])
@pytest.mark.parametrize("client_window", [None, *range(8, 16)])
@pytest.mark.parametrize("flags", list(itertools.product(FLAGS, FLAGS)))
def test_wskit_client_offer_accepts_every_valid_response(server_window, client_window, flags):
    settings = CompressionSettings(server_max_window_bits=15)
    policy = make_client_accept(settings)
    response = DeflateParams(flags[0], flags[1], server_window, client_window).header_value()
    accept = policy.accept_response_params(PD, deflate_offers(response)[0])
    assert accept.agreement.server_max_window_bits == (server_window or 15)
    assert accept.agreement.client_max_window_bits == min(client_window or 15, settings.client_max_window_bits)


def test_wskit_client_offer_follows_settings():
    assert client_offer(DeflatePolicy.from_settings(CompressionSettings(server_max_window_bits=15))).header_value() \
        == WSKIT_OFFER
    assert client_offer(DeflatePolicy.from_settings(
        CompressionSettings(server_max_window_bits=10, server_no_context_takeover=True))).header_value() \
        == f"{PD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; " \
           "client_max_window_bits"


# -- the server's choice among every compression offer of a request ------------------------------------

def test_choice_leaves_autobahn_only_the_accepted_offer():
    policy = ServerCompression(CompressionSettings())
    choice = policy.choose(parse_header(
        f"x-webkit-deflate-frame, {PD}; server_max_window_bits=8; x, {PD}; client_max_window_bits=8"))
    assert choice.extensions == [("x-webkit-deflate-frame", {}), (PD, {})]
    assert choice.accept.get_extension_string() == f"{PD}; server_max_window_bits=12; client_max_window_bits=8"
    assert choice.accept_offers(["anything"]) is choice.accept
    assert choice.declined == [f"{PD}: unknown parameter 'x'"]


def test_choice_skips_disabled_codecs_and_declines_everything_when_off():
    settings = CompressionSettings(codecs=("permessage-bzip2", "permessage-deflate"))
    choice = ServerCompression(settings).choose(parse_header(f"permessage-bzip2; bogus, {PD}"))
    assert choice.agreement is not None and choice.extensions == [(PD, {})]
    assert choice.declined and "bogus" in choice.declined[0]
    choice = ServerCompression(CompressionSettings(enabled=False)).choose(parse_header(f"{PD}; x, foo"))
    assert (choice.accept, choice.extensions) == (None, [("foo", {})])
