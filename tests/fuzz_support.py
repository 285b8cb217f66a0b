"""Budgets and switches shared by the fuzz tests (tests/test_fuzz_*.py, tests/memory/fuzz_target.py).

CI runs a short, reproducible budget: each property gets a few dozen to a few
hundred examples, generated from a fixed seed (``derandomize``), so a failure
in CI fails the same way on every machine. Environment variables widen it:

* ``WSKIT_FUZZ_EXAMPLES=N``: examples per property (scales every default budget
  to N; e.g. 20000 for an overnight run).
* ``WSKIT_FUZZ_RANDOM=1``: explore new inputs on every run instead of the
  fixed sequence (failures then print a ``@reproduce_failure`` blob).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

RANDOM = os.environ.get("WSKIT_FUZZ_RANDOM") == "1"


def examples(default: int) -> int:
    """The example budget of one property: ``default`` unless WSKIT_FUZZ_EXAMPLES says otherwise."""
    value = os.environ.get("WSKIT_FUZZ_EXAMPLES")
    return int(value) if value else default


def fuzz_settings(default_examples: int) -> settings:
    return settings(
        max_examples=examples(default_examples),
        deadline=None,
        derandomize=not RANDOM,
        database=None,  # nothing written into the checkout; derandomized runs replay anyway
        print_blob=RANDOM,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
