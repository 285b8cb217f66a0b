"""The ``>>>`` examples in wskit's docstrings run and say what the code does.

They run in a fresh process, under the names wskit is installed as
(``wskit.protocols.pubsub``, not the source folder's ``protocols.pubsub``):
a doctest that imported a backend would otherwise select txaio's framework
for this whole pytest process.
"""

from __future__ import annotations

import re
import subprocess
import sys

from support import ROOT, python_env

# source folder -> the package it is installed as (pyproject's package-dir)
PACKAGES = {"wskit": "wskit", "protocols": "wskit.protocols", "clients": "wskit.clients"}

RUNNER = """
import doctest, importlib, sys
failed = 0
for name in sys.argv[1:]:
    result = doctest.testmod(importlib.import_module(name), report=True)
    print(f"doctest {name} attempted={result.attempted} failed={result.failed}", flush=True)
    failed += result.failed
sys.exit(1 if failed else 0)
"""


def modules_with_examples() -> list[str]:
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
                found.append(".".join([package, *parts]))
    return found


def test_docstring_examples_run():
    modules = modules_with_examples()
    assert "wskit.negotiation" in modules and "wskit.protocols.pubsub" in modules, modules
    proc = subprocess.run([sys.executable, "-c", RUNNER, *modules], cwd=ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=120)
    report = f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, report
    results = {name: (int(attempted), int(failed)) for name, attempted, failed
               in re.findall(r"^doctest (\S+) attempted=(\d+) failed=(\d+)$", proc.stdout, re.M)}
    assert set(results) == set(modules), report
    assert all(failed == 0 for _, failed in results.values()), report
    assert all(attempted > 0 for attempted, _ in results.values()), report
    assert sum(attempted for attempted, _ in results.values()) >= 20, report
