"""What the app clients (chat, pubsub, rpc) share: request/reply matching over a ClientConnection."""

from __future__ import annotations

import itertools
from typing import Any

import txaio

from wskit.errors import RequestError
from wskit.serializers import APP_VERSIONS, parse_subprotocol

from .connection import ClientConnection, ConnectionClosed


class AppClient:
    """Wraps an open :class:`ClientConnection` of one ``wskit.<app>.v<N>.<serializer>`` subprotocol.

    Replies to this client's requests resolve the request's future; every other
    message (room messages, presence, events) is read with :meth:`recv` or
    ``async for msg in client``.
    """

    app = ""

    def __init__(self, connection: ClientConnection):
        parsed = parse_subprotocol(connection.subprotocol)
        if parsed is None or parsed.app != self.app:
            raise ValueError(f"{type(self).__name__} needs a wskit.{self.app}.v<N>.<serializer> connection, "
                             f"not {connection.subprotocol or 'no subprotocol'}")
        self.connection = connection
        self.version = parsed.version
        self._pending: dict[Any, Any] = {}
        self._ids = itertools.count(1)
        connection.interceptors.append(self._intercept)
        connection.close_hooks.append(self._fail_pending)

    @classmethod
    def subprotocols(cls, version: int | None = None, serializers: tuple[str, ...] = ("json", "msgpack")) -> list[str]:
        """Names to offer, e.g. ``ChatClient.subprotocols(2)`` -> ``["wskit.chat.v2.json", "wskit.chat.v2.msgpack"]``."""
        versions = [version] if version else list(APP_VERSIONS[cls.app])
        return [f"wskit.{cls.app}.v{v}.{s}" for v in versions for s in serializers]

    def _intercept(self, msg: Any) -> bool:
        raise NotImplementedError

    def _fail_pending(self, closed: ConnectionClosed) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            txaio.reject(future, closed)

    def _request(self, key: Any, msg: Any) -> Any:
        future = txaio.create_future()
        self._pending[key] = future
        sent = self.connection.send(msg)

        def not_sent(fail: Any) -> None:
            self._pending.pop(key, None)
            txaio.reject(future, fail)

        txaio.add_callbacks(sent, None, not_sent)
        return future

    def recv(self) -> Any:
        return self.connection.recv()

    def close(self, code: int = 1000, reason: str | None = None) -> Any:
        return self.connection.close(code, reason)

    def __aiter__(self) -> ClientConnection:
        return self.connection.__aiter__()


class TypedRequestClient(AppClient):
    """Chat and pubsub: requests carry a ``ref`` that the direct reply (or error) echoes."""

    def _intercept(self, msg: Any) -> bool:
        if not isinstance(msg, dict) or "ref" not in msg:
            return False
        future = self._pending.pop(msg["ref"], None)
        if future is None:
            return False
        if msg.get("type") == "error":
            txaio.reject(future, RequestError(str(msg.get("code")), str(msg.get("message"))))
        else:
            txaio.resolve(future, msg)
        return True

    def _typed_request(self, msg: dict) -> Any:
        ref = next(self._ids)
        return self._request(ref, dict(msg, ref=ref))
