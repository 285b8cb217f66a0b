#!/usr/bin/env bash
# Full Autobahn conformance suite: all 517 cases on all five paths
# (server: twisted, asyncio, twistd -n wskit; client: twisted, asyncio).
# Needs a regular (non-editable) install so twistd finds the wskit plugin.
# Exit status is non-zero on any FAILED/ERROR/UNIMPLEMENTED case or any close
# verdict other than OK/INFORMATIONAL. Reports: autobahn_suite/reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
# 4 cases at a time: on a 2-core machine the five paths took 43 min (README "Timing");
# AUTOBAHN_PARALLEL=6 was ~25% faster on a group 12/13 sample.
exec "$PYTHON" -m autobahn_suite all --full --parallel "${AUTOBAHN_PARALLEL:-4}"
