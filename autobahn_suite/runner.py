"""Run the Autobahn cases against wskit (server and client side) and judge the results.

The runner process itself imports neither wskit backend: testees run as
subprocesses (one process = one backend) and kosoku drives or serves the cases
from here. kosoku is imported only where it runs: ``client --against URL``
(the wskit client against a fuzzingserver someone else runs) works without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import REPORTS_DIR, ROOT, SERVER_TESTEE_ARGS

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
GOOD_CLOSE = ("OK", "INFORMATIONAL")


class SuiteError(Exception):
    """A testee or the runner could not be set up; the message says what to do."""


# -- verdicts --------------------------------------------------------------------


def verdict_problems(behavior: str, close: str, result: str = "", result_close: str = "") -> list[str]:
    """Why a case verdict fails the suite's rules (empty when it passes).

    Passing means: behaviour OK, NON-STRICT or INFORMATIONAL (never FAILED,
    ERROR or UNIMPLEMENTED) and a close verdict of OK or INFORMATIONAL.
    """
    problems = []
    if behavior in ("FAILED", "ERROR", "UNIMPLEMENTED"):
        problems.append(f"behaviour {behavior}: {result}")
    if close not in GOOD_CLOSE:
        problems.append(f"close {close}: {result_close}")
    return problems


def case_problems(result: Any) -> list[str]:
    """:func:`verdict_problems` for a kosoku ``CaseResult``."""
    return verdict_problems(result.behavior.value, result.behavior_close.value, result.result,
                            result.result_close)


def group_of(case_id: str) -> str:
    return case_id.split(".")[0]


def _group_sort_key(group: str) -> list[int]:
    return [int(p) for p in group.split(".")]


@dataclass
class PathResult:
    """The outcome of one path (e.g. server/twisted) over the selected cases."""

    name: str
    results: list[Any] = field(default_factory=list)
    wall_seconds: float = 0.0
    error: str | None = None
    # Client driven --against someone else's fuzzingserver: it holds the verdicts.
    verdicts_elsewhere: bool = False

    @property
    def failures(self) -> list[tuple[str, list[str]]]:
        out = []
        for r in self.results:
            problems = case_problems(r)
            if problems:
                out.append((r.case_id, problems))
        return out

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        return self.verdicts_elsewhere or (bool(self.results) and not self.failures)

    def groups(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for r in self.results:
            row = table.setdefault(group_of(r.case_id), {"cases": 0, "bad_close": 0, "ms": 0,
                                                         **{b: 0 for b in BEHAVIORS}})
            row["cases"] += 1
            row[r.behavior.value] = row.get(r.behavior.value, 0) + 1
            if r.behavior_close.value not in GOOD_CLOSE:
                row["bad_close"] += 1
            row["ms"] += r.duration
        return dict(sorted(table.items(), key=lambda kv: _group_sort_key(kv[0])))

    def notable(self) -> list[tuple[str, str, str]]:
        """Cases passing with NON-STRICT or INFORMATIONAL verdicts: (case, behaviour, close)."""
        return [
            (r.case_id, r.behavior.value, r.behavior_close.value)
            for r in self.results
            if r.behavior.value in ("NON-STRICT", "INFORMATIONAL")
            or r.behavior_close.value == "INFORMATIONAL"
        ]


def format_summary(path: PathResult) -> str:
    lines = [f"== {path.name}: {len(path.results)} cases in {path.wall_seconds:.1f}s wall"]
    if path.error:
        lines.append(f"   ERROR: {path.error}")
    if path.results:
        head = ("group", "cases", "OK", "NON-STRICT", "INFO", "UNIMPL", "FAILED", "ERROR", "BADCLOSE",
                "case-s")
        rows = [head]
        totals = Counter()
        for group, row in path.groups().items():
            values = [row["cases"], row["OK"], row["NON-STRICT"], row["INFORMATIONAL"], row["UNIMPLEMENTED"],
                      row["FAILED"], row["ERROR"], row["bad_close"]]
            rows.append((group, *map(str, values), f"{row['ms'] / 1000:.1f}"))
            totals.update(dict(zip(head[1:-1], values)))
            totals["ms"] += row["ms"]
        rows.append(("total", *(str(totals[h]) for h in head[1:-1]), f"{totals['ms'] / 1000:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for row in rows:
            lines.append("   " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        lines.append("   (case-s: summed case durations; cases overlap when run in parallel)")
    notable = path.notable()
    if notable:
        lines.append("   non-strict/informational: " + ", ".join(f"{c} ({b}/{cl})" for c, b, cl in notable))
    for case_id, problems in path.failures:
        lines.append(f"   FAIL {case_id}: " + "; ".join(problems))
    if path.verdicts_elsewhere:
        lines.append("   verdicts: in the fuzzingserver's own report (this side only ran the client)")
    lines.append(f"   verdict: {'PASS' if path.ok else 'FAIL'}")
    return "\n".join(lines)


def write_path_reports(path: PathResult, outdir: Path) -> None:
    """Autobahn-format HTML+JSON reports plus durations.json for one path."""
    from kosoku._report import write_reports

    outdir.mkdir(parents=True, exist_ok=True)
    if path.results:
        write_reports(path.results, str(outdir))
    durations = {
        "path": path.name,
        "cases": len(path.results),
        "wall_seconds": round(path.wall_seconds, 2),
        "passed": path.ok,
        "groups": {g: {"cases": row["cases"], "seconds": round(row["ms"] / 1000, 3)}
                   for g, row in path.groups().items()},
        "failures": {case_id: problems for case_id, problems in path.failures},
        "error": path.error,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (outdir / "durations.json").write_text(json.dumps(durations, indent=2) + "\n")


# -- testee processes --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# twistd with the checkout root first on its path, so it finds twisted/plugins/wskit_plugin.py there
# (an editable install, pip install -e ., provides wskit itself), whatever its working directory.
TWISTD = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.argv[0] = 'twistd'; "
          "from twisted.scripts.twistd import run; run()"]


def check_twistd_plugin() -> None:
    """Fail with one clear line unless twistd, run from the checkout, lists the ``wskit`` plugin."""
    out = subprocess.run([*TWISTD, "--help"], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                         env=child_env(), timeout=60)
    names = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ") and line.split()}
    if "wskit" not in names:
        raise SuiteError(
            "twistd does not list the 'wskit' plugin: run the suite from the checkout root with wskit "
            "installed (pip install -e .)"
        )


def server_command(backend: str, port: int, baseline: bool = False) -> list[str]:
    if baseline:
        if backend not in ("twisted", "asyncio"):
            raise SuiteError("--baseline runs on --backend twisted or asyncio")
        return [sys.executable, "-m", "autobahn_suite.baseline_server", "--backend", backend,
                "--port", str(port)]
    if backend == "twistd":
        check_twistd_plugin()
        return [*TWISTD, "-n", "--pidfile=", "wskit", "--port", str(port), *SERVER_TESTEE_ARGS]
    return [sys.executable, "-m", "wskit", "serve", "--backend", backend, "--port", str(port),
            *SERVER_TESTEE_ARGS]


class TesteeServer:
    """A testee server subprocess; ready once its port accepts TCP connections."""

    def __init__(self, command: list[str], port: int, log_path: Path, cwd: Path):
        self.command = command
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(self.cwd), env=child_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise SuiteError(f"testee server did not start: {' '.join(self.command)}\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


# -- the two directions ------------------------------------------------------------------


async def run_fuzzingclient_against(url: str, cases: Sequence[str] | None, parallel: int) -> list[Any]:
    from kosoku import FailureError, run_fuzzingclient

    try:
        return list(await run_fuzzingclient(url, list(cases) if cases else None, None,
                                            concurrency=parallel))
    except FailureError as failure:
        return list(failure.results)


async def run_server_path(backend: str, cases: Sequence[str] | None, parallel: int,
                          against: str | None = None, baseline: bool = False,
                          outdir: Path | None = None) -> PathResult:
    """kosoku's fuzzingclient against a wskit echo server (or ``against`` a running one)."""
    name = f"server-{'baseline-' if baseline else ''}{backend}" if not against else f"server@{against}"
    path = PathResult(name)
    outdir = outdir or REPORTS_DIR / name.replace("@", "-at-").replace(":", "_").replace("/", "_")
    server = None
    started = time.monotonic()
    try:
        if against:
            url = against
        else:
            port = free_port()
            workdir = Path(tempfile.mkdtemp(prefix="wskit-testee-"))  # twistd writes no files in the repo
            cwd = workdir if backend == "twistd" else ROOT
            server = TesteeServer(server_command(backend, port, baseline), port, outdir / "testee.log", cwd)
            server.start()
            url = server.url
        started = time.monotonic()
        path.results = await run_fuzzingclient_against(url, cases, parallel)
    except SuiteError as exc:
        path.error = str(exc)
    finally:
        path.wall_seconds = time.monotonic() - started
        if server is not None:
            server.stop()
            if server.proc is not None and server.proc.returncode not in (0, -15, None) and not path.error:
                path.error = f"testee server exited with {server.proc.returncode} (see {server.log_path})"
    write_path_reports(path, outdir)
    return path


def testee_client_command(backend: str, url: str, parallel: int) -> list[str]:
    return [sys.executable, "-m", "autobahn_suite.testee_client", "--backend", backend, "--url", url,
            "--parallel", str(parallel)]


async def _run_testee_client(backend: str, url: str, parallel: int, log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(*testee_client_command(backend, url, parallel),
                                                    stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                                    env=child_env())
        return await proc.wait()


async def run_client_path(backend: str, cases: Sequence[str] | None, parallel: int,
                          against: str | None = None, outdir: Path | None = None) -> PathResult:
    """The wskit echo client (a subprocess on ``backend``) driven by kosoku's fuzzingserver.

    With ``against`` the fuzzingserver is someone else's: only the wskit testee
    client runs, so this path needs wskit and not kosoku.
    """
    if backend not in ("twisted", "asyncio"):
        raise SuiteError("the client side runs on --backend twisted or asyncio")
    name = f"client-{backend}"
    outdir = outdir or REPORTS_DIR / name
    path = PathResult(name, verdicts_elsewhere=bool(against))
    started = time.monotonic()
    if against:
        # Someone else's fuzzingserver holds the verdicts and writes the reports.
        code = await _run_testee_client(backend, against, parallel, outdir / "testee.log")
        path.wall_seconds = time.monotonic() - started
        if code:
            path.error = f"testee client exited with {code} (see {outdir / 'testee.log'})"
        return path
    from kosoku import FailureError, run_fuzzingserver

    async with run_fuzzingserver(list(cases) if cases else None, None, host="127.0.0.1", port=0) as fuzz:
        url = f"ws://127.0.0.1:{fuzz.port}"
        client = asyncio.ensure_future(_run_testee_client(backend, url, parallel, outdir / "testee.log"))

        async def results() -> list[Any]:
            try:
                return list(await fuzz.get_result())
            except FailureError as failure:
                return list(failure.results)

        collect = asyncio.ensure_future(results())
        done, _ = await asyncio.wait({client, collect}, return_when=asyncio.FIRST_COMPLETED)
        if collect not in done:
            # The client exited; the server finishes once updateReports arrived.
            try:
                await asyncio.wait_for(asyncio.shield(collect), 30)
            except asyncio.TimeoutError:
                collect.cancel()
                path.error = (f"testee client exited with {client.result()} before finishing the run "
                              f"(see {outdir / 'testee.log'})")
        if collect.done() and not collect.cancelled():
            path.results = collect.result()
        code = await client
        if code and not path.error:
            path.error = f"testee client exited with {code} (see {outdir / 'testee.log'})"
    path.wall_seconds = time.monotonic() - started
    write_path_reports(path, outdir)
    return path


def write_combined_durations(paths: Sequence[PathResult], target: Path) -> None:
    data = {
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "paths": {
            p.name: {
                "cases": len(p.results),
                "wall_seconds": round(p.wall_seconds, 2),
                "passed": p.ok,
                "groups": {g: round(row["ms"] / 1000, 3) for g, row in p.groups().items()},
            }
            for p in paths
        },
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2) + "\n")
