#!/usr/bin/env bash
# Full Autobahn conformance suite: all 517 cases on all five paths
# (server: twisted, asyncio, twistd -n wskit; client: twisted, asyncio).
# Needs a regular (non-editable) install so twistd finds the wskit plugin.
# Exit status is non-zero on any FAILED/ERROR/UNIMPLEMENTED case or any close
# verdict other than OK/INFORMATIONAL. Reports: autobahn_suite/reports/.
#
# Each path's testee is one Python process, so a path keeps about one core
# busy: two lanes run side by side on a 2-core machine.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
# 4 cases at a time within a path. One lane of all five paths at --parallel 4 took 43 min on a
# shared 2-core machine; more cases in flight helped on a group 12/13 sample (README "Timing").
PARALLEL="${AUTOBAHN_PARALLEL:-4}"
LOGS="autobahn_suite/reports/ci"
mkdir -p "$LOGS"

lane() {  # lane NAME PATH... (PATH is side:backend)
    local name=$1 status=0
    shift
    for path in "$@"; do
        "$PYTHON" -m autobahn_suite "${path%%:*}" --backend "${path##*:}" --full --parallel "$PARALLEL" \
            >"$LOGS/${path/:/-}.log" 2>&1 || status=1
        echo "lane $name: $path done (exit $status so far) at $(date -u +%H:%M:%S)"
    done
    return $status
}

lane A server:twisted server:twistd client:asyncio & a=$!
lane B server:asyncio client:twisted & b=$!
status=0
wait $a || status=1
wait $b || status=1
for path in server:twisted server:asyncio server:twistd client:twisted client:asyncio; do
    echo
    echo "==== $path"
    cat "$LOGS/${path/:/-}.log"
done
exit $status
