"""Subprotocol negotiation: pure and table-tested."""

import pytest

from wskit.negotiation import (
    NoCommonSubprotocol,
    NoDefaultSubprotocol,
    SubprotocolRegistry,
    negotiate_subprotocol,
)

SUPPORTED = ["wskit.chat.v2.json", "wskit.chat.v1.json", "wskit.echo"]


@pytest.mark.parametrize(
    "offered, prefer, expected",
    [
        ([], "server", None),
        (["wskit.echo"], "server", "wskit.echo"),
        (["wskit.chat.v1.json", "wskit.chat.v2.json"], "server", "wskit.chat.v2.json"),
        (["wskit.chat.v1.json", "wskit.chat.v2.json"], "client", "wskit.chat.v1.json"),
        (["bogus.v9", "wskit.echo"], "server", "wskit.echo"),
        (["bogus.v9", "wskit.echo"], "client", "wskit.echo"),
        (["wskit.echo", "wskit.chat.v1.json"], "client", "wskit.echo"),
        (["wskit.echo", "wskit.chat.v1.json"], "server", "wskit.chat.v1.json"),
    ],
)
def test_negotiate_table(offered, prefer, expected):
    assert negotiate_subprotocol(offered, SUPPORTED, prefer) == expected


def test_only_unknown_offered_names_both_sides():
    with pytest.raises(NoCommonSubprotocol) as info:
        negotiate_subprotocol(["bogus.v9", "nope"], SUPPORTED)
    assert info.value.status == 400
    assert "bogus.v9" in str(info.value) and "wskit.echo" in str(info.value)


def _registry():
    reg = SubprotocolRegistry()
    for name in SUPPORTED:
        reg.register(name, lambda conn, name=name: name)
    return reg


def test_registry_default_when_nothing_offered():
    answered, entry = _registry().select([], "wskit.echo")
    assert answered is None and entry.name == "wskit.echo"


def test_registry_without_default_requires_a_subprotocol():
    with pytest.raises(NoDefaultSubprotocol) as info:
        _registry().select([], None)
    assert "subprotocol is required" in str(info.value)


def test_restricted_keeps_given_order_and_rejects_unknown():
    reg = _registry().restricted(["wskit.echo", "wskit.chat.v1.json"])
    assert reg.names == ("wskit.echo", "wskit.chat.v1.json")
    with pytest.raises(KeyError, match="unknown subprotocol 'nope'"):
        _registry().restricted(["nope"])


def test_invalid_names_refused():
    with pytest.raises(ValueError, match="HTTP token"):
        SubprotocolRegistry().register("bad name", lambda c: None)
