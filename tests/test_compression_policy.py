"""permessage-deflate offer/accept policy, without sockets."""

import zlib

import pytest
from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
)

from wskit.compression import (
    TunedPerMessageDeflate,
    accept_deflate_offer,
    make_client_accept,
    make_client_offers,
    make_server_accept,
    tune_extension,
)
from wskit.settings import CompressionSettings, SettingsError


def offer(header_params):
    return PerMessageDeflateOffer.parse({k: [v] for k, v in header_params.items()})


def test_default_server_accept_asks_client_for_12_bit_window():
    accept = accept_deflate_offer(offer({"client_max_window_bits": True}), CompressionSettings())
    assert accept.get_extension_string() == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    pmce = PerMessageDeflate.create_from_offer_accept(True, accept)
    assert (pmce.server_max_window_bits, pmce.client_max_window_bits, pmce.mem_level) == (12, 12, 5)


def test_client_without_window_param_is_not_asked_but_told_the_server_window():
    accept = accept_deflate_offer(offer({}), CompressionSettings())
    assert accept.get_extension_string() == "permessage-deflate; server_max_window_bits=12"


def test_requested_server_window_answered_with_what_server_uses():
    accept = accept_deflate_offer(offer({"server_max_window_bits": "14"}), CompressionSettings())
    assert "server_max_window_bits=12" in accept.get_extension_string()
    accept = accept_deflate_offer(offer({"server_max_window_bits": "10"}), CompressionSettings())
    assert "server_max_window_bits=10" in accept.get_extension_string()


def test_no_context_takeover_both_sides_announced():
    settings = CompressionSettings(server_no_context_takeover=True, client_no_context_takeover=True)
    text = accept_deflate_offer(offer({}), settings).get_extension_string()
    assert "server_no_context_takeover" in text and "client_no_context_takeover" in text


def test_server_accept_skips_disabled_codecs():
    accept = make_server_accept(CompressionSettings(codecs=("permessage-deflate",)))
    assert accept([offer({})]).get_extension_string().startswith("permessage-deflate")
    assert accept([]) is None


def test_unavailable_codec_is_a_clear_error():
    with pytest.raises(SettingsError, match="permessage-nothing"):
        make_server_accept(CompressionSettings(codecs=("permessage-nothing",)))


def test_client_offer_and_response_accept():
    (client_offer,) = make_client_offers(CompressionSettings(server_max_window_bits=10))
    assert client_offer.get_extension_string() == (
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
    )
    accept = make_client_accept(CompressionSettings(client_max_window_bits=12))
    response = PerMessageDeflateResponse(9, True, 10, False)
    pmce = PerMessageDeflate.create_from_response_accept(False, accept(response))
    assert pmce.client_max_window_bits == 9 and pmce.client_no_context_takeover


def test_level_applies_through_tuned_class():
    accept = accept_deflate_offer(offer({}), CompressionSettings(level=1))
    pmce = PerMessageDeflate.create_from_offer_accept(True, accept)
    tune_extension(pmce, CompressionSettings(level=1))
    assert isinstance(pmce, TunedPerMessageDeflate) and pmce.level == 1
    pmce.start_compress_message()
    data = pmce.compress_message_data(b"hello hello hello") + pmce.end_compress_message()
    assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == b"hello hello hello"


@pytest.mark.parametrize(
    "field, value",
    [("server_max_window_bits", 8), ("client_max_window_bits", 16), ("mem_level", 0), ("level", 10),
     ("threshold", -1)],
)
def test_settings_validation(field, value):
    with pytest.raises(SettingsError, match=field):
        CompressionSettings(**{field: value}).validate()


def _tuned_pair(server_no_context_takeover: bool, client_no_context_takeover: bool):
    settings = CompressionSettings(server_no_context_takeover=server_no_context_takeover,
                                   client_no_context_takeover=client_no_context_takeover)
    pair = []
    for is_server in (True, False):
        pmce = PerMessageDeflate(is_server, server_no_context_takeover, client_no_context_takeover, 12, 12, 5)
        tune_extension(pmce, settings)
        pair.append(pmce)
    return pair


def _send(sender, receiver, payload: bytes) -> bytes:
    sender.start_compress_message()
    data = sender.compress_message_data(payload) + sender.end_compress_message()
    receiver.start_decompress_message()
    out = receiver.decompress_message_data(data)
    receiver.end_decompress_message()
    return out


@pytest.mark.parametrize("server_reset, client_reset", [(True, False), (False, True), (True, True)])
def test_no_context_takeover_frees_zlib_contexts_between_messages(server_reset, client_reset):
    server, client = _tuned_pair(server_reset, client_reset)
    message = b'{"type": "message", "text": "hello hello hello"}'
    for _ in range(3):  # contexts are rebuilt for each message and work every time
        assert _send(server, client, message) == message
        assert _send(client, server, message) == message
    # A direction without context takeover keeps no zlib state while idle; one with it keeps its state.
    assert (server._compressor is None, client._decompressor is None) == (server_reset, server_reset)
    assert (client._compressor is None, server._decompressor is None) == (client_reset, client_reset)


def test_zlib_default_level_is_tuned_too_so_contexts_are_freed():
    pmce = PerMessageDeflate(True, True, False, 12, 12, 5)
    tune_extension(pmce, CompressionSettings(level=-1, server_no_context_takeover=True))
    assert isinstance(pmce, TunedPerMessageDeflate) and pmce.level == zlib.Z_DEFAULT_COMPRESSION
    pmce.start_compress_message()
    pmce.compress_message_data(b"x" * 100)
    pmce.end_compress_message()
    assert pmce._compressor is None
