"""``wskit.connect()``: open a :class:`ClientConnection` on the running backend.

Importing a backend adapter selects txaio's framework for the whole process,
so :func:`connect` imports ``wskit.twisted`` or ``wskit.asyncio`` only once it
knows which loop the caller runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import txaio

from wskit.settings import ClientSettings


def detect_backend() -> str:
    """Which event loop the caller runs: txaio's choice, a running reactor, a running asyncio loop."""
    if txaio.using_twisted:
        return "twisted"
    if txaio.using_asyncio:
        return "asyncio"
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None and getattr(reactor, "running", False):
        return "twisted"
    try:
        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        pass
    if reactor is not None:
        return "twisted"
    raise RuntimeError("wskit.connect: cannot tell which event loop to use; call it from a running "
                       "asyncio loop or Twisted reactor, or pass backend='asyncio' or backend='twisted'")


def with_token(settings: ClientSettings, token: str) -> ClientSettings:
    """``settings`` sending ``Authorization: Bearer <token>`` (replacing any Authorization header)."""
    token = token.strip()
    if not token or any(c in token for c in "\r\n"):
        raise ValueError("a token must be a non-empty single line")
    headers = tuple((k, v) for k, v in settings.headers if k.lower() != "authorization")
    return settings.replace(headers=(*headers, ("Authorization", f"Bearer {token}")))


def connect(url: str, subprotocols: Sequence[str] = (), *, backend: str | None = None,
            settings: ClientSettings | None = None, reactor: Any = None, token: str | None = None) -> Any:
    """Open a client connection; await it, use it as ``async with``, or iterate it.

    ``subprotocols`` are offered in preference order (they replace those in
    ``settings``). ``backend`` is ``"asyncio"`` or ``"twisted"``; by default
    the running environment decides (see :func:`detect_backend`). ``token``
    (a JWT, see ``wskit token``) is sent as ``Authorization: Bearer <token>``.
    On Twisted the result is a Deferred (also an async context manager)
    firing with the :class:`ClientConnection`; on asyncio an awaitable async
    context manager. Fails with :class:`wskit.HandshakeError` when the server
    refuses (``status`` 401 for a missing or invalid token).

    ``async for conn in connect(...)`` yields a new open connection each time
    one is (re)established, with backoff between attempts, following
    ``settings.reconnect`` (:class:`wskit.ReconnectSettings`); see
    :mod:`wskit.clients.reconnect`. On Twisted the connection timers run on
    ``reactor`` (the global reactor if None).
    """
    backend = backend or detect_backend()
    settings = settings or ClientSettings()
    if subprotocols:
        if isinstance(subprotocols, str):
            subprotocols = (subprotocols,)
        settings = settings.replace(subprotocols=tuple(subprotocols))
    if token is not None:
        settings = with_token(settings, token)
    if backend == "twisted":
        from ._twisted import connect_twisted

        return connect_twisted(url, settings, reactor)
    if backend == "asyncio":
        from ._asyncio import Connecting

        return Connecting(url, settings)
    raise ValueError(f"backend must be 'twisted' or 'asyncio', not {backend!r}")


def start_coroutine(coro: Any) -> Any:
    """Run ``coro`` on the framework txaio uses: a Deferred on Twisted, a task on asyncio."""
    if txaio.using_twisted:
        from ._twisted import start
    else:
        from ._asyncio import start
    return start(coro)


__all__ = ["connect", "detect_backend", "start_coroutine", "with_token"]
