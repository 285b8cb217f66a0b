"""Prometheus metrics of a wskit server (``--metrics-port``, ``ServerSettings.metrics``).

One recorder per process, :func:`recorder`: a :class:`NullRecorder` that
records nothing until a server with metrics turned on calls :func:`enable`.
Connections, the hub and the supervisor report to it; it never imports a
reactor or an event loop, and ``prometheus_client`` (the ``wskit[metrics]``
extra) only once enabled.

Per-message cost: none beyond what Autobahn already does. Autobahn counts
every connection's messages, payload and wire bytes in the connection's
``trafficStats``; with metrics on, connections of one subprotocol share one
:class:`Traffic` there, and :meth:`PrometheusRecorder.flush` moves its sums
into the counters (a ``prometheus_client`` increment costs about 900 ns, an
attribute addition about 60). A single process flushes before each scrape; a
worker process flushes every :data:`FLUSH_SECONDS` and on exit, into
prometheus_client's multiprocess files, which the supervisor aggregates when
scraped (so a scrape there lags by at most that long).

Hub latency: a hub that hands an event to local subscribers calls
``recorder().hub_delivered(published_at)`` with the publisher's
``time.time()`` (a :class:`wskit.Broadcast` carries it as ``published_at``;
a hub that crosses processes carries it in its envelope), and
``recorder().hub_reconnected()`` when it reconnects to its broker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from autobahn.websocket.protocol import TrafficStats

from .errors import SettingsError

# Seconds between a worker's flushes into the multiprocess files.
FLUSH_SECONDS = 1.0
# The subprotocol label of bytes of connections whose handshake was refused.
NO_SUBPROTOCOL = "none"
# publish -> deliver latency buckets, seconds: an in-process hub sits in the
# first bucket; a broker adds a network round trip or two.
HUB_LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MISSING_CLIENT = "metrics need prometheus-client: pip install 'wskit[metrics]'"


class Traffic(TrafficStats):
    """What the open connections of one subprotocol sent and received since the last flush.

    Autobahn's own per-connection traffic counters, shared: with metrics on, an
    opening connection's ``trafficStats`` becomes its subprotocol's
    :class:`Traffic` (its handshake bytes added), so Autobahn's existing
    increments are all the per-message work there is.
    """


class NullRecorder:
    """Records nothing; what a process has until :func:`enable`."""

    enabled = False

    def __init__(self) -> None:
        self._sink = Traffic()

    def traffic(self, subprotocol: str) -> Traffic:
        """The :class:`Traffic` a connection serving ``subprotocol`` adds to."""
        return self._sink

    def connection_opened(self, subprotocol: str) -> None:
        pass

    def connection_closed(self, subprotocol: str, code: int | None) -> None:
        pass

    def handshake_refused(self, status: int) -> None:
        pass

    def slow_consumer_dropped(self) -> None:
        pass

    def hub_delivered(self, published_at: float | None) -> None:
        pass

    def hub_reconnected(self) -> None:
        pass

    def workers_running(self, count: int) -> None:
        pass

    def worker_restarted(self) -> None:
        pass

    def flush(self) -> None:
        self._sink.reset()

    def exposition(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4; charset=utf-8"


def check_available() -> None:
    """Raise :class:`SettingsError` (one line) unless prometheus_client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise SettingsError(MISSING_CLIENT) from None


class PrometheusRecorder(NullRecorder):
    """Records into prometheus_client metrics.

    ``multiprocess_dir``: a worker's (or the supervisor's) prometheus_client
    multiprocess directory; :meth:`exposition` then aggregates every
    process's files there.
    """

    enabled = True

    def __init__(self, multiprocess_dir: str | None = None):
        super().__init__()
        check_available()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            # prometheus_client picks its value class from the environment when
            # first imported; a process may have imported it before choosing.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
            if not getattr(values.ValueClass, "_multiprocess", False):
                values.ValueClass = values.get_value_class()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("wskit_connections", "Open WebSocket connections", ["subprotocol"],
                                 registry=r, multiprocess_mode="livesum")
        self.opened = Counter("wskit_connections_opened", "WebSocket connections opened", ["subprotocol"],
                              registry=r)
        self.closed = Counter("wskit_connections_closed", "WebSocket connections closed, by close code "
                              "(1006: dropped without a closing handshake)", ["subprotocol", "code"], registry=r)
        self.messages = Counter("wskit_messages", "WebSocket messages", ["direction", "subprotocol"], registry=r)
        self.payload_bytes = Counter("wskit_payload_bytes", "WebSocket message payload bytes (uncompressed)",
                                     ["direction", "subprotocol"], registry=r)
        self.wire_bytes = Counter("wskit_wire_bytes", "Bytes on the wire: handshakes, frames, compressed payloads",
                                  ["direction", "subprotocol"], registry=r)
        self.refused = Counter("wskit_handshakes_refused", "Opening handshakes refused, by HTTP status",
                               ["status"], registry=r)
        self.slow_consumers = Counter("wskit_slow_consumer_drops", "Connections dropped as too slow a consumer",
                                      registry=r)
        self.hub_latency = Histogram("wskit_hub_delivery_seconds", "Hub latency from publish to local delivery",
                                     registry=r, buckets=HUB_LATENCY_BUCKETS)
        self.hub_reconnects = Counter("wskit_hub_reconnects", "Reconnections of the hub to its broker", registry=r)
        self._workers: Any = None
        self._restarts: Any = None
        self._by_subprotocol: dict[str, tuple[Traffic, tuple[Any, ...]]] = {}
        self._open: dict[str, Any] = {}

    # -- what connections report --------------------------------------------

    def traffic(self, subprotocol: str) -> Traffic:
        entry = self._by_subprotocol.get(subprotocol)
        if entry is None:
            children = tuple(metric.labels(direction, subprotocol)
                             for metric in (self.messages, self.payload_bytes, self.wire_bytes)
                             for direction in ("in", "out"))
            entry = self._by_subprotocol[subprotocol] = (Traffic(), children)
        return entry[0]

    def connection_opened(self, subprotocol: str) -> None:
        gauge = self._open.get(subprotocol)
        if gauge is None:
            gauge = self._open[subprotocol] = self.connections.labels(subprotocol)
        gauge.inc()
        self.opened.labels(subprotocol).inc()

    def connection_closed(self, subprotocol: str, code: int | None) -> None:
        self._open[subprotocol].dec()
        # RFC 6455 7.1.5: a close frame without a code counts as 1005.
        self.closed.labels(subprotocol, str(1005 if code is None else code)).inc()

    def handshake_refused(self, status: int) -> None:
        self.refused.labels(str(status)).inc()

    def slow_consumer_dropped(self) -> None:
        self.slow_consumers.inc()

    def hub_delivered(self, published_at: float | None) -> None:
        if published_at is not None:
            self.hub_latency.observe(max(0.0, time.time() - published_at))

    def hub_reconnected(self) -> None:
        self.hub_reconnects.inc()

    # -- what a supervisor reports -----------------------------------------

    def workers_running(self, count: int) -> None:
        if self._workers is None:
            from prometheus_client import Gauge

            self._workers = Gauge("wskit_workers", "Worker processes running", registry=self.registry,
                                  multiprocess_mode="livesum")
        self._workers.set(count)

    def worker_restarted(self) -> None:
        if self._restarts is None:
            from prometheus_client import Counter

            self._restarts = Counter("wskit_worker_restarts", "Worker processes restarted after they exited",
                                     registry=self.registry)
        self._restarts.inc()

    # -- output --------------------------------------------------------------

    def flush(self) -> None:
        """Move the traffic counted since the last flush into the counters."""
        for t, children in self._by_subprotocol.values():
            values = (t.incomingWebSocketMessages, t.outgoingWebSocketMessages,
                      t.incomingOctetsAppLevel, t.outgoingOctetsAppLevel,
                      t.incomingOctetsWireLevel + t.preopenIncomingOctetsWireLevel,
                      t.outgoingOctetsWireLevel + t.preopenOutgoingOctetsWireLevel)
            if any(values):
                for child, value in zip(children, values):
                    if value:
                        child.inc(value)
                t.reset()

    def exposition(self) -> tuple[bytes, str]:
        """``(body, content type)`` of a scrape: this process, or every process of the multiprocess directory."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        self.flush()
        registry = self.registry
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def mark_process_dead(self, pid: int) -> None:
        """Forget a dead worker's connections gauge (its counters keep counting in the totals)."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.multiprocess_dir)


_recorder: NullRecorder = NullRecorder()


def recorder() -> NullRecorder:
    """This process's recorder (a :class:`NullRecorder` until :func:`enable`)."""
    return _recorder


def enable(multiprocess_dir: str | None = None) -> PrometheusRecorder:
    """Record metrics in this process from now on; idempotent.

    Raises :class:`SettingsError` when prometheus-client is not installed.
    """
    global _recorder
    if not isinstance(_recorder, PrometheusRecorder):
        _recorder = PrometheusRecorder(multiprocess_dir)
    return _recorder


__all__ = ["FLUSH_SECONDS", "NullRecorder", "PrometheusRecorder", "Traffic", "check_available", "enable",
           "recorder"]
