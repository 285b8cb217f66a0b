"""Twisted only: writability comes from a push producer registered on the transport."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer

from memory import frames as f
from memory.flow_cases import *  # noqa: F401,F403  (the per-turn batching, on both backends)
from memory.server_cases import open_echo


def test_a_push_producer_is_registered_on_the_transport(tier):
    _factory, conn = open_echo(tier)
    producer = conn.transport.producer
    assert producer is not None and conn.transport.streaming is True
    assert IPushProducer.providedBy(producer)
    producer.stopProducing()  # the transport stopping it changes nothing
    assert conn.proto.writable and conn.proto.is_connected


def test_buffered_amount_counts_bytes_queued_since_the_pause(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.text("before"))
    assert conn.proto.buffered_amount == 0  # writable: Twisted says nothing about its buffer
    conn.pause_transport()
    assert conn.proto.buffered_amount == 0
    conn.send(f.text("x" * 10))
    assert conn.proto.buffered_amount == 2 + 10  # one unmasked frame: header and payload
    conn.resume_transport()
    assert conn.proto.buffered_amount == 0


def test_producer_is_unregistered_when_the_connection_drops(tier):
    _factory, conn = open_echo(tier)
    conn.proto.abort()
    tier.settle()
    assert conn.transport.producer is None
