"""Origin policy table (pure)."""

import pytest
from autobahn.websocket.types import ConnectionDeny

from wskit.origin import OriginPolicy


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
