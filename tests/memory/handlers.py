"""Small handlers for the in-memory tests (backend-neutral, like any wskit Handler)."""

from __future__ import annotations

from typing import Any

from wskit.handler import Handler
from wskit.negotiation import SubprotocolRegistry


class Recorder(Handler):
    """Records every call it gets; answers ``shout:<text>`` with the text upper-cased."""

    subprotocol = "test.recorder.v1"

    def __init__(self, connection: Any):
        super().__init__(connection)
        self.events: list[tuple] = []

    def on_open(self) -> None:
        self.events.append(("open", self.connection.subprotocol, self.connection.served_subprotocol))

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        self.events.append(("message", payload, is_binary))
        if not is_binary and payload.startswith(b"shout:"):
            self.connection.send_text(payload[6:].decode().upper())

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.events.append(("close", was_clean, code))


class Raises(Handler):
    """``on_message`` raises."""

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        raise RuntimeError("handler bug")


def returns_failed(failed: Any) -> type[Handler]:
    """A handler whose ``on_message`` returns a failed future/Deferred made by ``failed(exc)``."""

    class ReturnsFailed(Handler):
        def on_message(self, payload: bytes, is_binary: bool) -> Any:
            return failed(RuntimeError("asynchronous handler bug"))

    return ReturnsFailed


class AwaitRaises(Handler):
    """``on_message`` is a coroutine that raises."""

    async def on_message(self, payload: bytes, is_binary: bool) -> None:
        raise RuntimeError("coroutine handler bug")


def registry(*entries: tuple[str, Any]) -> SubprotocolRegistry:
    """A registry of ``(name, handler factory)`` in preference order."""
    reg = SubprotocolRegistry()
    for name, factory in entries:
        reg.register(name, factory)
    return reg


class PausesOnFirst(Recorder):
    """Pauses reading when its first message arrives; ``resume_inside`` resumes at the second."""

    resume_inside = False

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        super().on_message(payload, is_binary)
        received = sum(1 for event in self.events if event[0] == "message")
        if received == 1:
            self.connection.pause_reading()
        elif received == 2 and self.resume_inside:
            self.connection.pause_reading()
            self.connection.resume_reading()


class PausesAndResumesInside(PausesOnFirst):
    resume_inside = True
