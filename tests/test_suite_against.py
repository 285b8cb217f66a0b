"""``python -m autobahn_suite client --against URL`` needs wskit only, not kosoku.

The wskit testee client runs against a fuzzingserver someone else started (here
kosoku's, in its own process) while ``import kosoku`` fails in the runner and in
the testee client it spawns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import BACKENDS, ROOT, ServerProcess, free_port, python_env

pytestmark = pytest.mark.timeout(90)

CASES = ("1.1.1", "2.1")
KOSOKU = str(Path(sys.executable).with_name("kosoku"))


def kosoku_blocked_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Pythons (the runner and its subprocesses) cannot import kosoku."""
    stub = tmp_path / "block" / "kosoku"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("kosoku is not installed here")\n')
    env = python_env()
    env["PYTHONPATH"] = str(tmp_path / "block") + ((":" + env["PYTHONPATH"]) if env.get("PYTHONPATH") else "")
    return env


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_against_a_running_fuzzingserver_without_kosoku(backend, tmp_path):
    env = kosoku_blocked_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import kosoku"], capture_output=True, text=True, env=env,
                           timeout=30)
    assert probe.returncode != 0 and "kosoku is not installed here" in probe.stderr

    port = free_port()
    reports = tmp_path / "fuzzingserver"
    args = ["-m", "fuzzingserver", f"127.0.0.1:{port}", "-o", str(reports)]
    for case in CASES:
        args += ["-i", case]
    with ServerProcess(args, ready="listening", cmd=[KOSOKU]) as fuzz:
        proc = subprocess.run(
            [sys.executable, "-m", "autobahn_suite", "client", "--backend", backend,
             "--against", f"ws://127.0.0.1:{port}", "--cases", *CASES, "--outdir", str(tmp_path / "client")],
            capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "verdict: PASS" in proc.stdout
        assert "verdicts are in the fuzzingserver's reports" in proc.stdout
        assert "decided by the fuzzingserver" in proc.stderr  # --cases is the server's choice
        assert fuzz.proc is not None
        fuzz.proc.wait(30)  # kosoku's fuzzingserver exits once the client asked for the reports

    agent = f"wskit-{backend}"
    index = json.loads((reports / "index.json").read_text())
    assert sorted(index[agent]) == sorted(CASES)
    for case_id, entry in index[agent].items():
        assert (entry["behavior"], entry["behaviorClose"]) == ("OK", "OK"), (case_id, entry)
    log = (tmp_path / "client" / "testee.log").read_text()
    assert f"testee: {agent}: ran {len(CASES)} cases" in log
