"""Origin policy table (pure)."""

import pytest
from autobahn.websocket.types import ConnectionDeny

from wskit.origin import HostPolicy, OriginPolicy


@pytest.mark.parametrize(
    "allowed, origin, host, expected",
    [
        ((), None, "example.com", True),
        ((), "http://evil.example.com", "127.0.0.1:9000", False),
        ((), "http://127.0.0.1:9000", "127.0.0.1:9000", True),
        ((), "http://localhost:3000", "chat.example.com", True),
        ((), "http://[::1]:8080", "chat.example.com", True),
        ((), "https://chat.example.com", "chat.example.com", False),  # http server: port 80 vs 443
        ((), "http://chat.example.com", "chat.example.com", True),
        ((), "http://chat.example.com:8080", "chat.example.com:8080", True),
        ((), "null", "chat.example.com", False),
        (("*",), "http://evil.example.com", "chat.example.com", True),
        (("https://*.example.com",), "https://app.example.com", "ws.example.org", True),
        (("https://*.example.com",), "https://app.example.org", "ws.example.org", False),
    ],
)
def test_origin_table(allowed, origin, host, expected):
    assert OriginPolicy(allowed).allows(origin, host) is expected


def test_refusal_is_403_and_says_how_to_allow():
    with pytest.raises(ConnectionDeny) as info:
        OriginPolicy().check("http://evil.example.com", "127.0.0.1:9000")
    assert info.value.code == 403
    assert "--allow-origin http://evil.example.com" in info.value.reason


def test_null_is_refused_saying_what_it_is_and_allowed_when_listed():
    with pytest.raises(ConnectionDeny) as info:
        OriginPolicy().check("null", "127.0.0.1:9000")
    assert info.value.code == 403
    assert "sandboxed frame or a file" in info.value.reason and "--allow-origin null" in info.value.reason
    assert OriginPolicy(["null"]).allows("null", "127.0.0.1:9000")


@pytest.mark.parametrize(
    "allowed, bind, host, expected",
    [
        ((), "127.0.0.1", None, True),  # no Host: the handshake itself refuses it
        ((), "127.0.0.1", "127.0.0.1:9000", True),
        ((), "127.0.0.1", "localhost", True),
        ((), "127.0.0.1", "localhost.", True),
        ((), "127.0.0.1", "api.localhost:9000", True),
        ((), "127.0.0.1", "[::1]:9000", True),
        ((), "127.0.0.1", "127.0.0.53", True),  # all of 127/8 is loopback
        ((), "127.0.0.1", "evil.example:9000", False),
        ((), "127.0.0.1", "127.0.0.1.evil.example", False),
        ((), "127.0.0.1", "localhost.evil.example", False),
        ((), "127.0.0.1", "192.0.2.7", False),  # an address the server is not bound to
        ((), "127.0.0.1", "", False),
        ((), "192.0.2.7", "192.0.2.7:9000", True),
        ((), "0.0.0.0", "192.0.2.7:9000", True),  # bound everywhere: any address
        ((), "::", "[2001:db8::1]:9000", True),
        ((), None, "198.51.100.1", True),  # bind address unknown (endpoint string, mounted Resource)
        ((), "0.0.0.0", "my-laptop.lan", False),  # but no name
        ((), "ws.example.net", "WS.example.net:443", True),  # bound to a name
        (("chat.example.com",), "0.0.0.0", "chat.example.com:9000", True),
        (("*.example.com",), "127.0.0.1", "a.b.example.com", True),
        (("*.example.com",), "127.0.0.1", "example.com", False),
        (("*",), "127.0.0.1", "anything.at.all", True),
    ],
)
def test_host_table(allowed, bind, host, expected):
    assert HostPolicy(allowed, bind_host=bind).allows(host) is expected


def test_host_refusal_is_403_and_says_how_to_allow():
    with pytest.raises(ConnectionDeny) as info:
        HostPolicy(["chat.example.com"], bind_host="127.0.0.1").check("evil.example:9000")
    assert info.value.code == 403
    assert "host evil.example not allowed" in info.value.reason
    assert "chat.example.com" in info.value.reason and "--allow-host evil.example" in info.value.reason
