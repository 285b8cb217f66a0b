"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification), transport- and backend-neutral.

:class:`RPCService` holds the methods of one app and turns a decoded request
(object or batch) into a response (object, list, or None for notifications).
Methods may be plain functions, coroutines or Deferred-returning functions:
results go through ``txaio.as_future``. Nothing here imports a reactor or loop.

>>> rpc = RPCService()
>>> @rpc.method
... def add(a, b):
...     return a + b
>>> sorted(m["name"] for m in rpc.describe()["methods"])
['add', 'rpc.discover']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import txaio

from .errors import WskitError
from .logs import log_failure

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# In the range JSON-RPC 2.0 leaves to servers: the caller may not call this method.
FORBIDDEN = -32001

STANDARD_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    FORBIDDEN: "Forbidden",
}




class RPCError(WskitError):
    """A JSON-RPC error: raise it from a method to answer with it; clients raise it for error replies.

    >>> RPCError(-32601, "Method not found", "nope").to_dict()
    {'code': -32601, 'message': 'Method not found', 'data': 'nope'}
    """

    def __init__(self, code: int, message: str | None = None, data: Any = None):
        self.code = code
        self.message = message or STANDARD_MESSAGES.get(code, "Server error")
        self.data = data
        super().__init__(f"[{code}] {self.message}" + (f": {data}" if data is not None else ""))

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_dict(cls, error: Any) -> RPCError:
        if not isinstance(error, dict):
            return cls(INTERNAL_ERROR, "malformed error object", error)
        code = error.get("code")
        return cls(code if isinstance(code, int) else INTERNAL_ERROR, str(error.get("message", "")),
                   error.get("data"))


class InvalidParams(RPCError):
    """Raise from a method whose arguments are of the wrong kind (answers -32602)."""

    def __init__(self, data: Any = None):
        super().__init__(INVALID_PARAMS, None, data)


def error_response(code: int, id: Any = None, data: Any = None, message: str | None = None) -> dict:
    return {"jsonrpc": "2.0", "error": RPCError(code, message, data).to_dict(), "id": id}


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


@dataclass
class Method:
    name: str
    func: Callable[..., Any]
    description: str = ""

    @property
    def signature(self) -> inspect.Signature | None:
        try:
            return inspect.signature(self.func)
        except (TypeError, ValueError):
            return None

    def describe(self) -> dict[str, Any]:
        params = []
        sig = self.signature
        for p in (sig.parameters.values() if sig else ()):
            entry: dict[str, Any] = {"name": p.name, "required": p.default is p.empty
                                     and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            if p.kind == p.VAR_POSITIONAL:
                entry["variadic"] = True
            elif p.kind == p.VAR_KEYWORD:
                entry["keywords"] = True
            if p.default is not p.empty:
                entry["default"] = p.default if _plain(p.default) else repr(p.default)
            params.append(entry)
        return {"name": self.name, "params": params, "description": self.description}

    def bind(self, params: Any) -> tuple[tuple, dict]:
        args: tuple = tuple(params) if isinstance(params, list) else ()
        kwargs: dict = dict(params) if isinstance(params, dict) else {}
        sig = self.signature
        if sig is not None:
            try:
                sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidParams(str(exc)) from None
        return args, kwargs


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


class RPCService:
    """The methods one app serves, and the JSON-RPC dispatcher.

    Register with ``@rpc.method``, ``@rpc.method("name")``, ``@rpc.register("name")``
    or ``rpc.register("name", func)``. Names starting with ``rpc.`` are reserved.
    """

    def __init__(self, max_batch_size: int = 100):
        self.max_batch_size = max_batch_size
        self.methods: dict[str, Method] = {}
        self._add("rpc.discover", self.describe, "list the methods and their parameters")

    # -- registration ------------------------------------------------------

    def _add(self, name: str, func: Callable[..., Any], description: str | None = None) -> None:
        doc = description if description is not None else (inspect.getdoc(func) or "")
        self.methods[name] = Method(name, func, doc.split("\n\n")[0].strip())

    def register(self, name: Any = None, func: Callable[..., Any] | None = None,
                 description: str | None = None) -> Any:
        """``register("name", func)`` registers now; ``register("name")`` returns a decorator."""
        if callable(name) and func is None:  # used as a bare decorator
            func, name = name, None

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            method_name = name or f.__name__
            if not isinstance(method_name, str) or method_name.startswith("rpc."):
                raise ValueError(f"invalid method name {method_name!r} (names starting with 'rpc.' are reserved)")
            self._add(method_name, f, description)
            return f

        return add(func) if func is not None else add

    method = register

    def unregister(self, name: str) -> None:
        if name.startswith("rpc."):
            raise ValueError("built-in rpc.* methods cannot be removed")
        self.methods.pop(name, None)

    def describe(self) -> dict[str, Any]:
        """What ``rpc.discover`` answers."""
        return {"methods": [m.describe() for m in self.methods.values()]}

    # -- dispatch ----------------------------------------------------------

    def dispatch(self, request: Any, authorize: Callable[[str], Any] | None = None) -> Any:
        """A future of the response to a decoded request or batch (None: nothing to send).

        ``authorize(method)``, when given, is asked before each call of a
        well-formed request, and before the method is looked up (a caller
        learns nothing about methods it may not call): True, False, or a
        future of either. A denied request is answered with ``FORBIDDEN``
        (-32001); a denied notification gets no answer.
        """
        if isinstance(request, list):
            if not request:
                return txaio.create_future_success(error_response(INVALID_REQUEST, data="empty batch"))
            if len(request) > self.max_batch_size:
                return txaio.create_future_success(error_response(
                    INVALID_REQUEST, data=f"batch of {len(request)} requests; at most {self.max_batch_size}"))
            futures = [self._dispatch_one(item, authorize) for item in request]
            done = txaio.gather(futures, consume_exceptions=True)
            result = txaio.create_future()

            def collected(responses: list) -> None:
                answered = [r for r in responses if r is not None]
                txaio.resolve(result, answered or None)

            txaio.add_callbacks(done, collected, lambda fail: txaio.reject(result, fail))
            return result
        return self._dispatch_one(request, authorize)

    def _dispatch_one(self, request: Any, authorize: Callable[[str], Any] | None = None) -> Any:
        if not isinstance(request, dict):
            return txaio.create_future_success(
                error_response(INVALID_REQUEST, data="a request must be an object"))
        id_ = request.get("id")
        is_notification = "id" not in request
        if not _valid_id(id_):
            return txaio.create_future_success(
                error_response(INVALID_REQUEST, data="id must be a string, number or null"))
        reply_id = None if is_notification else id_
        problem = None
        if request.get("jsonrpc") != "2.0":
            problem = "jsonrpc must be exactly \"2.0\""
        elif not isinstance(request.get("method"), str):
            problem = "method must be a string"
        elif "params" in request and not isinstance(request["params"], (list, dict)):
            problem = "params must be an array or an object"
        if problem is not None:
            return txaio.create_future_success(error_response(INVALID_REQUEST, reply_id, problem))
        if authorize is None:
            return self._call(request)
        name = request["method"]
        forbidden = None if is_notification else error_response(
            FORBIDDEN, id_, f"not allowed to call {name!r}")
        verdict = authorize(name)
        if verdict is True:
            return self._call(request)
        if verdict is False:
            return txaio.create_future_success(forbidden)
        result = txaio.create_future()

        def decided(allowed: Any) -> None:
            if allowed is True:
                txaio.add_callbacks(self._call(request), lambda response: txaio.resolve(result, response),
                                    lambda fail: txaio.reject(result, fail))
            else:
                txaio.resolve(result, forbidden)

        txaio.add_callbacks(verdict, decided, lambda fail: txaio.reject(result, fail))
        return result

    def _call(self, request: dict) -> Any:
        """Look up and call a well-formed request's method; a future of its response."""
        id_ = request.get("id")
        is_notification = "id" not in request
        reply_id = None if is_notification else id_
        method = self.methods.get(request["method"])
        if method is None:
            error = error_response(METHOD_NOT_FOUND, reply_id, request["method"])
            return txaio.create_future_success(None if is_notification else error)
        result = txaio.create_future()

        def answered(value: Any) -> None:
            txaio.resolve(result, None if is_notification else
                          {"jsonrpc": "2.0", "result": value, "id": id_})

        def failed(fail: Any) -> None:
            exc = getattr(fail, "value", fail)
            if isinstance(exc, RPCError):
                error = {"jsonrpc": "2.0", "error": exc.to_dict(), "id": id_}
            else:
                log_failure(txaio.make_logger(), fail, "wskit rpc: {method} failed: {log_failure.value}",
                            method=method.name)
                error = error_response(INTERNAL_ERROR, id_)
            txaio.resolve(result, None if is_notification else error)

        try:
            args, kwargs = method.bind(request.get("params", []))
            future = txaio.as_future(method.func, *args, **kwargs)
        except Exception:
            failed(txaio.create_failure())
            return result
        txaio.add_callbacks(future, answered, failed)
        return result


def count_input_errors(response: Any) -> int:
    """How many parse/invalid-request errors a response carries (what the error budget charges)."""
    items = response if isinstance(response, list) else [response]
    return sum(1 for r in items if isinstance(r, dict) and isinstance(r.get("error"), dict)
               and r["error"].get("code") in (PARSE_ERROR, INVALID_REQUEST))


__all__ = [
    "FORBIDDEN",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "InvalidParams",
    "Method",
    "RPCError",
    "RPCService",
    "count_input_errors",
    "error_response",
]
