"""JSON-RPC 2.0 client for ``wskit.rpc.v1.json`` and ``wskit.rpc.v1.msgpack``.

Example::

    async with wskit.connect(url, subprotocols=RPCClient.subprotocols()) as conn:
        rpc = RPCClient(conn)
        print(await rpc.call("add", 1, 2))             # 3
        try:
            await rpc.call("nope")
        except wskit.RPCError as exc:
            print(exc.code, exc.message)               # -32601 Method not found
"""

from __future__ import annotations

from typing import Any

import txaio

from wskit.jsonrpc import RPCError

from .base import AppClient


class RPCClient(AppClient):
    app = "rpc"

    def _intercept(self, msg: Any) -> bool:
        if isinstance(msg, list):
            handled = [self._intercept(item) for item in msg]
            return bool(handled) and all(handled)
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            return False
        future = self._pending.pop(msg.get("id"), None) if msg.get("id") is not None else None
        if future is None:
            return False  # e.g. a parse error (id null): left for recv()
        if "error" in msg:
            txaio.reject(future, RPCError.from_dict(msg["error"]))
        else:
            txaio.resolve(future, msg.get("result"))
        return True

    @staticmethod
    def _request_object(method: str, args: tuple, kwargs: dict) -> dict:
        if args and kwargs:
            raise TypeError("JSON-RPC params are either positional or named, not both")
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if args or kwargs:
            request["params"] = list(args) if args else kwargs
        return request

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Fires with the result; fails with :class:`wskit.RPCError` for a JSON-RPC error."""
        request = self._request_object(method, args, kwargs)
        request["id"] = call_id = next(self._ids)
        return self._request(call_id, request)

    def notify(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A notification: no answer comes back, even for an error."""
        return self.connection.send(self._request_object(method, args, kwargs))

    def discover(self) -> Any:
        """Fires with ``rpc.discover``'s answer: ``{"methods": [{"name", "params", "description"}]}``."""
        return self.call("rpc.discover")
