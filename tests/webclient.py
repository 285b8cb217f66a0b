"""Independent HTTP and WebSocket clients for the web tests (no wskit backend imported)."""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request

from support import upgrade_request
from websockets.asyncio.client import connect


def trusting(cert: str) -> ssl.SSLContext:
    """A client SSL context that trusts exactly ``cert``."""
    context = ssl.create_default_context(cafile=cert)
    return context


def http_get(url: str, context: ssl.SSLContext | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    """GET ``url``; returns (status, headers, body) for any status."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def ws_echo(url: str, subprotocol: str = "wskit.echo", context: ssl.SSLContext | None = None,
                  text: str = "hello over the wire") -> tuple[str | None, str]:
    """Open ``url`` offering ``subprotocol``, send ``text``, return (negotiated subprotocol, reply)."""
    async with connect(url, subprotocols=[subprotocol], ssl=context, proxy=None, open_timeout=10) as ws:
        await ws.send(text)
        reply = await asyncio.wait_for(ws.recv(), 10)
        return ws.subprotocol, reply


async def raw_handshake(port: int, headers: dict[str, str], path: str = "/ws",
                        host: str = "127.0.0.1") -> tuple[int, str, bytes]:
    """Send a WebSocket upgrade request by hand; return (status, status line, body).

    Lets a test set any ``Origin``/``Host`` and read the refusal body.
    """
    headers = dict(headers)
    reader, writer = await asyncio.open_connection(host, port)
    host_header = headers.pop("Host", f"{host}:{port}")
    headers.setdefault("Sec-WebSocket-Protocol", "wskit.echo")
    writer.write(upgrade_request(host_header, path, headers))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line = head.split(b"\r\n", 1)[0].decode()
    status = int(status_line.split()[1])
    body = b""
    if status != 101:
        body = await asyncio.wait_for(reader.read(), 10)  # the server closes after a refusal
    writer.close()
    return status, status_line, body
