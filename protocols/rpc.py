"""JSON-RPC 2.0: ``wskit.rpc.v1.json`` and ``wskit.rpc.v1.msgpack``.

The same JSON-RPC objects travel as JSON text or msgpack binary frames. The
app's methods live in ``app.services["rpc"]`` (a :class:`wskit.jsonrpc.RPCService`)::

    rpc = app.services["rpc"]

    @rpc.method
    async def lookup(name):
        ...

Built in: ``echo``, ``add``, ``time``, ``sleep`` and ``rpc.discover``.
"""

from __future__ import annotations

import time
from typing import Any

import txaio

from wskit.jsonrpc import (
    INTERNAL_ERROR,
    PARSE_ERROR,
    InvalidParams,
    RPCService,
    count_input_errors,
    error_response,
)

from .base import SerializedHandler

MAX_SLEEP = 10.0


def install_builtins(rpc: RPCService) -> None:
    """The methods a default server answers."""

    @rpc.register("echo")
    def echo(value: Any = None) -> Any:
        """Return the argument unchanged."""
        return value

    @rpc.register("add")
    def add(*numbers: float) -> float:
        """Sum of the numbers given."""
        for n in numbers:
            if isinstance(n, bool) or not isinstance(n, (int, float)):
                raise InvalidParams(f"add takes numbers, not {n!r}")
        return sum(numbers)

    @rpc.register("time")
    def time_() -> float:
        """The server's clock, seconds since the epoch."""
        return time.time()

    @rpc.register("sleep")
    async def sleep(seconds: float = 0.1) -> float:
        """Wait (at most 10 s) and return the seconds waited: shows answers arriving out of order."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SLEEP:
            raise InvalidParams(f"seconds must be a number between 0 and {MAX_SLEEP}")
        await txaio.sleep(seconds)
        return seconds


def create_service(max_batch_size: int = 100) -> RPCService:
    rpc = RPCService(max_batch_size=max_batch_size)
    install_builtins(rpc)
    return rpc


class RPCHandler(SerializedHandler):
    """One JSON-RPC connection; requests are answered as they complete (ids say which is which)."""

    def on_bad_payload(self, reason: str) -> None:
        if self.count_bad_input():
            self.send(error_response(PARSE_ERROR, None, reason))

    def handle(self, msg: Any) -> Any:
        # Returned: a failure of dispatch or of the reply closes with 1011 like any handler error.
        future = self.service.dispatch(msg, self._authorize_call)
        txaio.add_callbacks(future, self._respond, None)
        return future

    def _authorize_call(self, method: str) -> Any:
        """May this connection call ``method``? A denial is charged to the error budget."""
        verdict = self.authorize("call", method)
        if verdict is True:
            return True
        if verdict is False:
            self.count_bad_input()
            return False
        charged = txaio.create_future()

        def decided(allowed: bool) -> None:
            if not allowed:
                self.count_bad_input()
            txaio.resolve(charged, allowed)

        txaio.add_callbacks(verdict, decided, None)
        return charged

    def _respond(self, response: Any) -> None:
        if response is None:
            return
        if count_input_errors(response) and not self.count_bad_input():
            return
        try:
            payload = self.serializer.encode(response)
        except (TypeError, ValueError, OverflowError) as exc:
            # A method returned something this serializer cannot carry.
            items = response if isinstance(response, list) else [response]
            fixed = [self._encodable(item, exc) for item in items]
            payload = self.serializer.encode(fixed if isinstance(response, list) else fixed[0])
        if self.connected:
            self.connection.send_message(payload, self.serializer.binary)

    def _encodable(self, item: dict, exc: Exception) -> dict:
        try:
            self.serializer.encode(item)
            return item
        except (TypeError, ValueError, OverflowError):
            return error_response(INTERNAL_ERROR, item.get("id"), f"result not serializable: {exc}")
