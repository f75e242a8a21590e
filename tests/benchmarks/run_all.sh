#!/usr/bin/env bash
# Run every benchmark script in this folder (bench_*.py), one after the other.
# Arguments go to each script: --quick for a smoke run, --strict to fail on a missed target.
# Exit status: 0, or 1 if any script failed (with --strict: missed its target).
# On a shared machine, other processes preempting the loop show up as timer lateness;
# as root, `chrt -f 10 tests/benchmarks/run_all.sh` keeps them from doing so.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=${PYTHON:-.venv/bin/python}
status=0
for script in tests/benchmarks/bench_*.py; do
    "$python" "$script" "$@" || status=1
    echo
done
exit "$status"
