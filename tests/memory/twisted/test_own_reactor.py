"""Twisted only: every timer of a connection runs on the reactor its factory was given."""

from __future__ import annotations

import sys

import txaio
from twisted.internet.testing import MemoryReactorClock

import wskit.twisted as wtwisted
from memory import frames as f
from memory.driver import memory_settings
from wskit.settings import TimeoutSettings


def test_handshake_echo_and_auto_ping_without_the_global_reactor(tier):
    factory = tier.server(memory_settings(timeouts=TimeoutSettings(auto_ping_interval=10, auto_ping_timeout=5)))
    conn = tier.connect(factory)
    # The opening-handshake timer is already pending, on this reactor.
    assert tier.reactor.getDelayedCalls(), "no timer on the factory's reactor after connectionMade"

    head = conn.open()
    assert head.header("sec-websocket-protocol") is None  # nothing offered: echo serves, unnamed
    conn.send(f.text("hello"))
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.TEXT, b"hello")]

    tier.advance(9)
    assert conn.frames() == []
    tier.advance(2)
    pings = conn.frames()
    assert [fr.opcode for fr in pings] == [f.PING]

    assert "twisted.internet.reactor" not in sys.modules


def test_factory_on_its_own_reactor_while_txaio_holds_another():
    # A process whose txaio already uses a reactor can still build a factory on another one.
    other = MemoryReactorClock()
    saved, txaio.config.loop = txaio.config.loop, other
    try:
        reactor = MemoryReactorClock()
        factory = wtwisted.ServerFactory(settings=memory_settings(), reactor=reactor)
        calls = []
        factory._batched_timer.call_later(1, calls.append, "fired")
        reactor.advance(1)
        assert calls == ["fired"]
        assert other.getDelayedCalls() == []
    finally:
        txaio.config.loop = saved
