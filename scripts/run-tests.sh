#!/usr/bin/env bash
# The whole test suite (`make test`), in two phases:
#
#   1. the unit tests and the integration modules in $BESIDE beside the
#      benchmarks' smoke runs (tests/integration/test_benchmarks.py): the
#      first assert no timing, the second mostly wait on switches,
#      namespaces and peers;
#   2. the other integration tests, alone: some measure rates (meters,
#      queues, bandwidth limits) or bound a wait and must not share the
#      machine.
#
# Each pytest session gets a base temp dir of its own (two sharing one would
# clean up each other's). With $PYTEST_ARGS (`make test PYTEST_ARGS=...`),
# one session over tests/ with those arguments instead.
# Exit status: the first failing session's, else 0.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${VPY:-.venv/bin/python}
if [ -n "${PYTEST_ARGS:-}" ]; then
    read -r -a extra <<<"$PYTEST_ARGS"
    exec "$PY" -m pytest tests "${extra[@]}"
fi
tmp=$(mktemp -d /tmp/kumoflow-tests.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# integration modules that measure no rate and bound no wait: API and protocol checks against real processes
BESIDE=(tests/integration/test_api_neutron_controller.py tests/integration/test_api_controller.py
        tests/integration/test_app_options.py tests/integration/test_ofp_tshark.py
        tests/integration/test_switch_osken.py)

"$PY" -m pytest --basetemp="$tmp/unit" tests/unit "${BESIDE[@]}" >"$tmp/unit.log" 2>&1 &
unit_pid=$!
"$PY" -m pytest --basetemp="$tmp/benchmarks" tests/integration/test_benchmarks.py
bench=$?
wait "$unit_pid"
unit=$?
echo "----- tests/unit and ${BESIDE[*]} (beside the benchmarks' smoke runs) -----"
cat "$tmp/unit.log"
"$PY" -m pytest --basetemp="$tmp/integration" tests/integration --ignore tests/integration/test_benchmarks.py \
    "${BESIDE[@]/#/--ignore=}"
integration=$?

status=0
for phase in "tests/unit and beside:$unit" "test_benchmarks:$bench" "tests/integration:$integration"; do
    code=${phase##*:}
    if [ "$code" -ne 0 ]; then      # 5 too: a session that collected nothing is not a pass
        echo "run-tests: ${phase%:*} failed (exit status $code)" >&2
        [ "$status" -ne 0 ] || status=$code
    fi
done
exit "$status"
