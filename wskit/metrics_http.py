"""The ``/metrics`` endpoint on the backend's own event loop.

Twisted: a twisted.web ``Resource`` on the reactor. asyncio: a small HTTP/1.1
handler on the loop (one GET per connection). Both answer what
:meth:`wskit.metrics.PrometheusRecorder.exposition` renders; every other
path is a 404. Imports a backend only inside the function that runs on it.
"""

from __future__ import annotations

import types
from typing import Any

from . import metrics
from .errors import ListenError, describe_listen_error
from .settings import MetricsSettings

METRICS_PATH = "/metrics"
# The longest request head the asyncio handler reads.
MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 10.0


def _listen_error(exc: BaseException, settings: MetricsSettings) -> ListenError:
    where = types.SimpleNamespace(endpoint=None, host=settings.host, port=settings.port)
    text = describe_listen_error(exc, where).replace("cannot listen on", "cannot serve metrics on", 1)
    return ListenError(text.replace("--port", "--metrics-port").replace("--host", "--metrics-host"))


def metrics_url(settings: MetricsSettings, port: int) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{port}{METRICS_PATH}"


def metrics_resource() -> Any:
    """A twisted.web Resource answering GET with the scrape (mount it at ``/metrics``)."""
    from twisted.web import resource

    class MetricsResource(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            body, content_type = metrics.recorder().exposition()
            request.setHeader(b"Content-Type", content_type.encode())
            return body

    return MetricsResource()


def listen_twisted(settings: MetricsSettings, reactor: Any) -> Any:
    """Serve ``/metrics`` on ``reactor``; a Deferred firing with the listening port
    (or failing with :class:`wskit.ListenError`)."""
    from twisted.internet import defer, endpoints
    from twisted.web import resource, server

    root = resource.Resource()
    root.putChild(METRICS_PATH.strip("/").encode(), metrics_resource())
    site = server.Site(root)
    site.noisy = False
    description = f"tcp:port={settings.port}:interface={endpoints.quoteStringArgument(settings.host)}"

    def failed(fail: Any) -> Any:
        raise _listen_error(fail.value, settings)

    try:
        d = endpoints.serverFromString(reactor, description).listen(site)
    except Exception as exc:  # a bad host in the description
        d = defer.fail(exc)
    return d.addErrback(failed)


async def serve_asyncio(settings: MetricsSettings) -> Any:
    """Serve ``/metrics`` on the running asyncio loop; returns the ``asyncio.Server``."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, content_type, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path != METRICS_PATH:
                status, content_type, body = "404 Not Found", "text/plain", b"metrics are at /metrics\n"
            else:
                status = "200 OK"
                body, content_type = metrics.recorder().exposition()
            writer.write((f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, settings.host, settings.port, limit=MAX_REQUEST_HEAD)
    except OSError as exc:
        raise _listen_error(exc, settings) from None


def listening_port(server: Any) -> int:
    """The port a metrics server from :func:`listen_twisted` or :func:`serve_asyncio` listens on."""
    sockets = getattr(server, "sockets", None)
    if sockets:
        return sockets[0].getsockname()[1]
    return server.getHost().port


__all__ = ["METRICS_PATH", "listen_twisted", "listening_port", "metrics_resource", "metrics_url", "serve_asyncio"]
