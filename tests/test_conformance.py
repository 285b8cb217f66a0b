"""Autobahn TestSuite conformance: the quick subset, server and client side, both backends.

Every case group (1-7, 9, 10, 12, 13) runs through kosoku against the wskit
echo server (``python -m wskit serve`` subprocess) and with the wskit echo client
(a subprocess per backend) driven by kosoku's fuzzingserver. The full 517-case
run on all five paths is the CI step ``autobahn_suite/ci.sh``.

kosoku runs in a ``python -m autobahn_suite`` subprocess, never in the pytest
process: importing its case index puts a stand-in ``autobahn`` package on
sys.path, which must not meet the real Autobahn the other tests import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from support import BACKENDS, ROOT, python_env

sys.path.insert(0, str(ROOT))

from autobahn_suite.config import QUICK_CASES  # noqa: E402
from autobahn_suite.runner import case_problems, verdict_problems  # noqa: E402

pytestmark = pytest.mark.timeout(120)

PARALLEL = 2


def verdict(behavior: str, close: str = "OK") -> SimpleNamespace:
    return SimpleNamespace(behavior=SimpleNamespace(value=behavior), behavior_close=SimpleNamespace(value=close),
                           result="r", result_close="rc")


@pytest.mark.parametrize(
    "behavior, close, passes",
    [
        ("OK", "OK", True),
        ("NON-STRICT", "OK", True),
        ("INFORMATIONAL", "INFORMATIONAL", True),
        ("UNIMPLEMENTED", "OK", False),
        ("FAILED", "OK", False),
        ("ERROR", "OK", False),
        ("OK", "WRONG CODE", False),
        ("OK", "UNCLEAN", False),
        ("OK", "FAILED BY CLIENT", False),
        ("OK", "FAILED", False),
    ],
)
def test_verdict_rules(behavior, close, passes):
    assert (not case_problems(verdict(behavior, close))) is passes
    assert (not verdict_problems(behavior, close)) is passes


def kosoku_groups() -> dict[str, list[str]]:
    code = "import json; from kosoku.cases import GROUPS; print(json.dumps(GROUPS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_quick_subset_covers_every_case_group():
    groups = kosoku_groups()
    all_cases = {case for minors in groups.values() for ids in minors.values() for case in ids}
    assert len(all_cases) == 517
    assert {case.split(".")[0] for case in QUICK_CASES} == set(groups)
    assert set(QUICK_CASES) <= all_cases
    # every compression parameter set of group 13 is exercised
    assert {".".join(c.split(".")[:2]) for c in QUICK_CASES if c.startswith("13.")} == set(groups["13"])


def run_suite(side: str, backend: str, outdir) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "autobahn_suite", side, "--backend", backend, "--parallel", str(PARALLEL),
           "--outdir", str(outdir)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=python_env(), timeout=110)


def assert_conformant(proc: subprocess.CompletedProcess, outdir, agent: str) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: PASS" in proc.stdout
    index = json.loads((outdir / "index.json").read_text())
    assert list(index) == [agent]
    verdicts = index[agent]
    assert sorted(verdicts) == sorted(QUICK_CASES)
    for case_id, entry in verdicts.items():
        assert verdict_problems(entry["behavior"], entry["behaviorClose"]) == [], (case_id, entry)
        assert entry["behavior"] != "UNIMPLEMENTED"
        if case_id.startswith(("12.", "13.")):
            # compression was negotiated (the case reports UNIMPLEMENTED otherwise) and used
            detail = json.loads((outdir / entry["reportfile"]).read_text())
            assert "permessage-deflate" in detail["httpResponse"].lower(), case_id
            stats = detail["trafficStats"]
            assert stats["incomingOctetsWebSocketLevel"] != stats["incomingOctetsAppLevel"], case_id
    durations = json.loads((outdir / "durations.json").read_text())
    assert durations["passed"] is True and durations["failures"] == {}
    assert set(durations["groups"]) == {c.split(".")[0] for c in QUICK_CASES}
    assert (outdir / "index.html").is_file()


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_side_quick_subset(backend, tmp_path):
    assert_conformant(run_suite("server", backend, tmp_path), tmp_path, "wskit")


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_side_quick_subset(backend, tmp_path):
    assert_conformant(run_suite("client", backend, tmp_path), tmp_path, f"wskit-{backend}")


def test_wstest_spec_files_run_every_case_against_wskit_defaults():
    from wskit.settings import ServerSettings

    client_spec = json.loads((ROOT / "autobahn_suite" / "fuzzingclient.json").read_text())
    server_spec = json.loads((ROOT / "autobahn_suite" / "fuzzingserver.json").read_text())
    for spec in (client_spec, server_spec):
        assert spec["cases"] == ["*"]
        assert spec["exclude-cases"] == [] and spec["exclude-agent-cases"] == {}
    assert [s["url"] for s in client_spec["servers"]] == [ServerSettings().url]
