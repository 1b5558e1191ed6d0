#!/usr/bin/env bash
# `make test`: the whole suite as two pytest runs side by side. The tests that start Ray Serve and vLLM
# (marker `serving`) run one after another in one process — two of them at once would fight over the
# 2 cores — while the unit and emulator tests, which mostly wait, run in a second process meanwhile.
# The second run's report is printed after the first's. Fails when either run fails; exit code 5 (no
# tests collected) counts as a failure only when both runs collected nothing (a selection such as
# `make test PYTEST_FLAGS=tests/unit` leaves one of them empty). The serving run lists its 25 slowest
# steps, so that a CI log shows where the suite's wall time goes. Usage: hack/run-tests.sh PYTHON [pytest args...]
set -uo pipefail
python=$1
shift
log=$(mktemp -t slm-tests-not-serving.XXXXXX.log)
trap 'rm -f "$log"' EXIT
"$python" -m pytest -m "not serving" "$@" >"$log" 2>&1 &
others=$!
"$python" -m pytest -m serving --durations=25 "$@"
serving_rc=$?
wait "$others"
others_rc=$?
echo
echo "==================== tests not marked serving (run alongside) ===================="
cat "$log"
echo "serving: exit ${serving_rc}; not serving: exit ${others_rc}"
passed_or_empty() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }
passed_or_empty "$serving_rc" && passed_or_empty "$others_rc" && ! { [ "$serving_rc" -eq 5 ] && [ "$others_rc" -eq 5 ]; }
