"""The stress suite's scenario model: what a scenario declares and what it reports.

A scenario is a small function ``f(ctx) -> Outcome`` registered with
:func:`scenario`, which records its input, its expected behaviour, its
parameters for each size (``small`` for CI, ``full`` for the documented run)
and the server it needs (:class:`ServerSpec`). The runner (benchmarks/stress.py)
starts that server, samples its memory, runs the function, checks the server
still serves, and prints one row.

Scenarios that need more than one ``wskit serve`` (a Redis hub, several
worker processes) join by naming what they need in ``requires`` and adding
a probe for it to :data:`REQUIREMENTS`; until a probe says the need is met
their rows show SKIP with the reason. :class:`ServerSpec` is where such a
scenario's server description grows (the runner builds the server from it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _stress_server import RSSSampler, ServerProcess

# Options every scenario's server gets: no demo page and no demo ticker, so
# the only traffic is the scenario's own.
BASE_ARGS = ("--no-static", "--ticker-interval", "0")


@dataclass(frozen=True)
class ServerSpec:
    """The server a scenario runs against: ``wskit serve`` options and its open-files limit."""

    args: tuple[str, ...] = ()
    nofile: int = 0

    def all_args(self) -> list[str]:
        return [*BASE_ARGS, *self.args]


@dataclass
class Outcome:
    observed: str
    ok: bool


@dataclass
class Context:
    """What a scenario function gets: its parameters and the server under test."""

    backend: str
    size: str
    p: dict[str, Any]
    server: ServerProcess
    rss: RSSSampler
    log_mark: int  # index of the server's first log line during this scenario
    started: float = field(default_factory=time.monotonic)
    rss_before: int = 0

    @property
    def port(self) -> int:
        return self.server.port

    def logs(self) -> list[str]:
        return self.server.lines[self.log_mark:]

    def count(self, text: str) -> int:
        return self.server.count(text, self.log_mark)

    def wait_for_count(self, text: str, n: int, timeout: float) -> int:
        return self.server.wait_for_count(text, n, timeout, self.log_mark)

    def rss_growth_kib(self) -> int:
        """Peak VmRSS during the scenario so far, above the value at its start."""
        self.rss.now()
        peak = self.rss.peak_since(self.started) or self.rss_before
        return max(0, peak - self.rss_before)


@dataclass
class Scenario:
    name: str
    func: Callable[[Context], Outcome]
    input: str
    expected: str
    sizes: dict[str, dict[str, Any]]
    server: Callable[[dict[str, Any]], ServerSpec]
    requires: tuple[str, ...] = ()
    stops_server: bool = False  # ends the server on purpose (no "still serving" probe)
    fresh: bool = False  # needs a server of its own (memory readings not shared with earlier rows)
    timeout: Callable[[dict[str, Any]], float] = lambda p: 120.0

    def params(self, size: str) -> dict[str, Any]:
        return dict(self.sizes[size])

    def describe(self, size: str) -> tuple[str, str]:
        p = self.params(size)
        return self.input.format(**p), self.expected.format(**p)


SCENARIOS: list[Scenario] = []

# name -> probe returning None when the need is met, else why not (the row shows SKIP and why).
REQUIREMENTS: dict[str, Callable[[], str | None]] = {}


def missing_requirements(names: tuple[str, ...]) -> str | None:
    for name in names:
        probe = REQUIREMENTS.get(name)
        if probe is None:
            return f"needs {name} (no probe for it yet)"
        reason = probe()
        if reason:
            return f"needs {name}: {reason}"
    return None


def scenario(name: str, *, input: str, expected: str, small: dict[str, Any], full: dict[str, Any],
             server: Callable[[dict[str, Any]], ServerSpec] | None = None, requires: tuple[str, ...] = (),
             stops_server: bool = False, fresh: bool = False, timeout: Callable[[dict[str, Any]], float] | float = 120.0):
    """Register a scenario function (see the module docstring)."""

    def register(func: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        SCENARIOS.append(Scenario(
            name=name, func=func, input=input, expected=expected, sizes={"small": small, "full": full},
            server=server or (lambda p: ServerSpec()), requires=requires, stops_server=stops_server, fresh=fresh,
            timeout=timeout if callable(timeout) else (lambda p, t=timeout: t),
        ))
        return func

    return register


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"
