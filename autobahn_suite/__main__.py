"""``python -m autobahn_suite {server,client,all}``: run the Autobahn cases against wskit.

Run from the repository root. Exit status 0 only when every case passes the
rules in README.md (no FAILED/ERROR/UNIMPLEMENTED, close verdict OK or
INFORMATIONAL); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from .config import ALL_PATHS, CLIENT_PATHS, QUICK_CASES, REPORTS_DIR, SERVER_PATHS
from .runner import (
    PathResult,
    SuiteError,
    format_summary,
    run_client_path,
    run_server_path,
    write_combined_durations,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autobahn_suite",
        description="Autobahn TestSuite cases (via kosoku) against the wskit echo server and client.",
    )
    parser.add_argument("side", choices=("server", "client", "all"),
                        help="server: fuzzingclient vs wskit serve; client: wskit client vs fuzzingserver; "
                             "all: server on twisted/asyncio/twistd and client on twisted/asyncio")
    parser.add_argument("--backend", choices=SERVER_PATHS,
                        help="server: twisted, asyncio or twistd (twistd -n wskit); client: twisted or "
                             "asyncio (default: twisted; ignored by 'all')")
    parser.add_argument("--cases", nargs="+", metavar="GLOB",
                        help="case ids or globs, e.g. 1.* 9.7.1 (default: the quick subset)")
    parser.add_argument("--full", action="store_true", help="all 517 cases")
    parser.add_argument("--against", metavar="URL",
                        help="server: fuzz this running server; client: drive this running fuzzingserver "
                             "(e.g. ws://127.0.0.1:9001 from `kosoku -m fuzzingserver`)")
    parser.add_argument("--parallel", type=int, default=2, metavar="N",
                        help="cases run at once (default: 2)")
    parser.add_argument("--outdir", metavar="DIR",
                        help=f"reports folder for a single path (default: {REPORTS_DIR}/<path>)")
    parser.add_argument("--baseline", action="store_true",
                        help="server: fuzz a plain Autobahn echo server instead of wskit, for comparison")
    return parser


async def run(args: argparse.Namespace) -> list[PathResult]:
    cases = None if args.full else (args.cases or list(QUICK_CASES))
    if args.side == "all":
        plan = list(ALL_PATHS)
    else:
        plan = [(args.side, args.backend or "twisted")]
    outdir = Path(args.outdir) if args.outdir else None
    paths = []
    for side, backend in plan:
        if side == "server":
            path = await run_server_path(backend, cases, args.parallel, args.against, args.baseline, outdir)
        else:
            path = await run_client_path(backend, cases, args.parallel, args.against, outdir)
        print(format_summary(path), flush=True)
        paths.append(path)
    return paths


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.side == "client" and args.backend not in (None, *CLIENT_PATHS):
        parser.error("the client side runs on --backend twisted or asyncio")
    if args.baseline and (args.side != "server" or args.backend == "twistd"):
        parser.error("--baseline is for 'server' with --backend twisted or asyncio")
    if args.against and args.side == "all":
        parser.error("--against needs 'server' or 'client'")
    if args.outdir and args.side == "all":
        parser.error("--outdir is for a single path ('server' or 'client')")
    if args.full and args.cases:
        parser.error("give --full or --cases, not both")
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if args.against and args.side == "client" and (args.cases or args.full):
        # The fuzzingserver decides which cases its clients run.
        sys.stderr.write("autobahn_suite: --cases/--full are decided by the fuzzingserver at "
                         f"{args.against}; ignored here\n")
    # Stop testee processes on SIGTERM too (the cleanup runs on KeyboardInterrupt).
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        paths = asyncio.run(run(args))
    except SuiteError as exc:
        sys.stderr.write(f"autobahn_suite: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    if len(paths) > 1:
        write_combined_durations(paths, REPORTS_DIR / "durations.json")
    failed = [p.name for p in paths if not p.ok]
    if args.against and args.side == "client" and not failed:
        print(f"verdicts are in the fuzzingserver's reports ({args.against})")
    print(f"autobahn_suite: {len(paths)} path(s) in {time.monotonic() - started:.1f}s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all passed")
          + f"; reports in {REPORTS_DIR}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
