"""Stress and fault suite: real ``wskit serve`` processes under hostile and heavy load.

    python benchmarks/stress.py [--backend twisted|asyncio|both] [--size small|full]
                                [--only NAME ...] [--skip NAME ...] [--list] [--json FILE]
                                [--set SCENARIO.KEY=VALUE ...] [--trace FILE]

For each backend, each scenario (benchmarks/_stress_scenarios.py) runs against
a ``wskit serve --port 0`` subprocess (scenarios that ask for the same server
options share one, in order), driven by raw RFC 6455 sockets and
python-websockets clients on 127.0.0.1. Each row says what was sent, what
should happen, what did, the server's VmRSS before / peak / after (MiB,
sampled every 50 ms), whether the server still answers an echo afterwards,
and PASS or FAIL. A row also fails when the server logged a traceback during
it. The exit status is 1 when any row failed.

``--size small`` (the default) is what CI runs in a few minutes; ``--size full``
is the documented run (docs/reliability.md), with a 10-minute soak.
``--set soak.seconds=240`` changes one parameter of a scenario for this run
(``--list`` shows them); ``--trace FILE`` writes each row's RSS, one sample a
second, and the server's ``stress-probe:`` lines (benchmarks/_stress_diag.py)
as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _stress_scenarios  # noqa: E402,F401  (registers the scenarios)
from _stress_core import SCENARIOS, Context, Outcome, Scenario, mib, missing_requirements  # noqa: E402
from _stress_server import RSSSampler, ServerProcess, still_serving  # noqa: E402

BACKENDS = ("twisted", "asyncio")
HEADERS = ("scenario", "input", "expected", "observed", "RSS MiB before / peak / after", "serving", "result", "s")
# Signs in a server log that something went wrong inside it.
TROUBLE = ("Traceback", "Unhandled error", "Unhandled Error")


class Row:
    def __init__(self, scenario: Scenario, size: str):
        self.name = scenario.name
        self.input, self.expected = scenario.describe(size)
        self.observed = ""
        self.rss = (None, None, None)
        self.serving = ""
        self.result = ""
        self.seconds = 0.0

    def cells(self) -> list[str]:
        before, peak, after = self.rss
        return [self.name, self.input, self.expected, self.observed,
                f"{mib(before)} / {mib(peak)} / {mib(after)}", self.serving, self.result, f"{self.seconds:.0f}"]

    def as_dict(self) -> dict:
        return dict(zip(("scenario", "input", "expected", "observed", "rss_kib", "serving", "result", "seconds"),
                        [self.name, self.input, self.expected, self.observed, self.rss, self.serving,
                         self.result, round(self.seconds, 1)]))


def run_with_deadline(scenario: Scenario, ctx: Context, seconds: float) -> Outcome:
    """Run the scenario in a thread; past ``seconds`` the server is killed (unblocking any
    socket the scenario waits on) and the row fails."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["outcome"] = scenario.func(ctx)
        except BaseException as exc:  # reported in the row: a scenario error is a failure
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=scenario.name)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        ctx.server.stop(timeout=1)
        thread.join(10)
        return Outcome(f"did not finish within {seconds:.0f} s", False)
    if "error" in box:
        exc = box["error"]
        return Outcome(f"scenario error: {type(exc).__name__}: {exc}"[:200], False)
    return box["outcome"]  # type: ignore[return-value]


def parse_override(text: str) -> tuple[str, str, object]:
    """``SCENARIO.KEY=VALUE`` -> (scenario, key, value); the value as JSON when it parses, else text."""
    target, sep, raw = text.partition("=")
    name, dot, key = target.partition(".")
    if not (sep and dot and name and key):
        raise ValueError(f"expected SCENARIO.KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, key, value


def write_trace(path: str, backend: str, name: str, ctx: Context, sampler: RSSSampler, until: float) -> None:
    series, last = [], None
    for t, kib in sampler.series(ctx.started, until):
        if last is None or t - last >= 1.0:
            series.append((round(t - ctx.started, 1), kib))
            last = t
    probes = [line.strip() for line in ctx.logs() if "stress-probe:" in line]
    with open(path, "a") as f:
        f.write(json.dumps({"backend": backend, "scenario": name, "params": ctx.p,
                            "rss_kib": series, "probes": probes}) + "\n")


def run_backend(backend: str, size: str, scenarios: list[Scenario], out=sys.stdout,
                trace: str | None = None) -> list[Row]:
    rows: list[Row] = []
    server: ServerProcess | None = None
    sampler: RSSSampler | None = None
    spec_of_server = None

    def stop_server() -> None:
        nonlocal server, sampler, spec_of_server
        if sampler is not None:
            sampler.stop()
        if server is not None:
            server.stop()
        server = sampler = spec_of_server = None

    try:
        for sc in scenarios:
            row = Row(sc, size)
            rows.append(row)
            started = time.monotonic()
            reason = missing_requirements(sc.requires)
            if reason:
                row.observed, row.result, row.serving = reason, "SKIP", "-"
                continue
            p = sc.params(size)
            spec = sc.server(p)
            if server is None or not server.alive or spec != spec_of_server or sc.fresh:
                stop_server()
                server = ServerProcess(backend, spec.all_args(), nofile=spec.nofile).start()
                sampler = RSSSampler(server.pid).start()
                spec_of_server = spec
                time.sleep(0.3)  # let the fresh process settle before the "before" reading
            assert server is not None and sampler is not None
            ctx = Context(backend=backend, size=size, p=p, server=server, rss=sampler,
                          log_mark=len(server.lines))
            ctx.rss_before = sampler.now() or 0
            ctx.started = time.monotonic()
            outcome = run_with_deadline(sc, ctx, sc.timeout(p))
            peak = sampler.peak_since(ctx.started)
            if trace:
                write_trace(trace, backend, sc.name, ctx, sampler, time.monotonic())
            if sc.stops_server:
                row.serving = "n/a (stopped)"
                serving_ok = True
                after = None
            elif server.alive:
                serving_ok, row.serving = still_serving(server.port)
                after = sampler.now()
            else:
                serving_ok, row.serving = False, f"no (exit {server.proc.poll()})"
                after = None
            trouble = [line for line in ctx.logs() if any(t in line for t in TROUBLE)]
            row.observed = outcome.observed
            if trouble:
                row.observed += f"; server logged: {trouble[0].strip()[:100]}"
            row.rss = (ctx.rss_before, max(filter(None, (peak, after, ctx.rss_before))), after)
            row.result = "PASS" if outcome.ok and serving_ok and not trouble else "FAIL"
            row.seconds = time.monotonic() - started
            print(f"  {backend} {sc.name}: {row.result} ({row.observed})", file=sys.stderr, flush=True)
            if sc.stops_server or not serving_ok:
                stop_server()
    finally:
        stop_server()
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    cells = [list(HEADERS)] + [[c.replace("|", "\\|") for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADERS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine_note() -> str:
    import platform

    return (f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="leave these scenarios out")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--set", action="append", default=[], metavar="SCENARIO.KEY=VALUE", dest="overrides",
                        help="change one parameter of a scenario for this run (e.g. soak.seconds=240)")
    parser.add_argument("--trace", metavar="FILE",
                        help="append each row's RSS (1 sample/s) and the server's probe lines as JSON lines")
    args = parser.parse_args(argv)

    names = [sc.name for sc in SCENARIOS]
    for name in (args.only or []) + args.skip:
        if name not in names:
            parser.error(f"no scenario {name!r} (known: {', '.join(names)})")
    for text in args.overrides:
        try:
            name, key, value = parse_override(text)
        except ValueError as exc:
            parser.error(str(exc))
        found = next((sc for sc in SCENARIOS if sc.name == name), None)
        if found is None or key not in found.sizes[args.size]:
            parser.error(f"no parameter {key!r} in scenario {name!r}")
        found.sizes[args.size][key] = value
        if key == "seconds" and "label" in found.sizes[args.size]:
            found.sizes[args.size]["label"] = f"{value} s"
    if args.list:
        for sc in SCENARIOS:
            given, expected = sc.describe(args.size)
            print(f"{sc.name}\n    input:    {given}\n    expected: {expected}")
        return 0
    chosen = [sc for sc in SCENARIOS if (not args.only or sc.name in args.only) and sc.name not in args.skip]
    backends = BACKENDS if args.backend == "both" else (args.backend,)

    started = time.monotonic()
    failed: list[str] = []
    report: dict[str, list[dict]] = {}
    for backend in backends:
        begun = time.monotonic()
        rows = run_backend(backend, args.size, chosen, trace=args.trace)
        took = time.monotonic() - begun
        print(f"\n### {backend} ({args.size}, {machine_note()}, {took:.0f} s)\n")
        print(markdown_table([r.cells() for r in rows]))
        failed += [f"{backend}:{r.name}" for r in rows if r.result == "FAIL"]
        report[backend] = [r.as_dict() for r in rows]
        sys.stdout.flush()
    total = sum(len(v) for v in report.values())
    print(f"\n{total - len(failed)} of {total} rows passed or were skipped in {time.monotonic() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "note": machine_note(), "rows": report},
                                              indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
