"""Token buckets for per-connection rate limits (pure: the clock is passed in).

A bucket holds up to ``capacity`` tokens and refills at ``rate`` tokens per
second. Each message takes its cost (1 for the message count, its length for
bytes) even when that drives the bucket below zero: the debt says how long
the connection must wait. :class:`Throttle` combines the buckets of one
connection into one decision per message.

>>> bucket = TokenBucket(rate=10, capacity=20, now=0.0)
>>> bucket.take(20, now=0.0), bucket.take(5, now=0.0), round(bucket.wait(now=0.0), 3)
(0.0, -5.0, 0.5)
>>> bucket.take(0, now=0.5)
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import RateLimitSettings


class TokenBucket:
    def __init__(self, rate: float, capacity: float, now: float):
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens; returns what is left (negative: in debt)."""
        self._refill(now)
        self.tokens -= cost
        return self.tokens

    def wait(self, now: float) -> float:
        """Seconds until the bucket is out of debt (0 when it is not in debt)."""
        self._refill(now)
        wait = -self.tokens / self.rate
        # A debt left by float rounding (1e-17 s) is paid: waiting for it would spin.
        return wait if wait > _NEGLIGIBLE_SECONDS else 0.0


_NEGLIGIBLE_SECONDS = 1e-9

# What Throttle.admit decides for one message.
PASS = "pass"          # handle it; the connection is within its rates
THROTTLE = "throttle"  # handle it, then stop reading until the buckets are out of debt
CLOSE = "close"        # more than a whole bucket ahead of the rate: do not handle it, close with 1008


@dataclass
class Verdict:
    action: str
    wait: float = 0.0  # THROTTLE: seconds until reading may resume
    limit: str = ""    # which rate was passed ("messages" or "bytes")


class Throttle:
    """The buckets of one connection (messages and/or bytes) and the policy:

    - within the rate (or the burst a quiet connection has saved up): pass;
    - in debt, by up to one whole bucket: handle the message but stop reading
      until the debt is paid (backpressure: TCP slows the sender down);
    - in debt by more than a whole bucket (the client sent more than twice
      its burst without waiting): close with 1008.
    """

    def __init__(self, settings: RateLimitSettings, now: float):
        self.buckets: list[tuple[str, TokenBucket]] = []
        if settings.max_message_rate:
            rate = settings.max_message_rate
            self.buckets.append(("messages", TokenBucket(rate, rate * settings.burst, now)))
        if settings.max_byte_rate:
            rate = settings.max_byte_rate
            self.buckets.append(("bytes", TokenBucket(rate, rate * settings.burst, now)))

    def admit(self, size: int, now: float) -> Verdict:
        verdict = Verdict(PASS)
        for kind, bucket in self.buckets:
            left = bucket.take(1 if kind == "messages" else size, now)
            if left < -bucket.capacity:
                return Verdict(CLOSE, limit=kind)
            if left < 0:
                wait = bucket.wait(now)
                if wait >= verdict.wait:
                    verdict = Verdict(THROTTLE, wait, kind)
        return verdict

    def wait(self, now: float) -> float:
        """Seconds until every bucket is out of debt."""
        return max((bucket.wait(now) for _kind, bucket in self.buckets), default=0.0)


__all__ = ["CLOSE", "PASS", "THROTTLE", "Throttle", "TokenBucket", "Verdict"]
