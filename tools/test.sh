#!/usr/bin/env bash
# The test command: lint, types, the full suite on this kernel, then the kernel2 subset on Debian 6.1.
# Usage: bash tools/test.sh [pytest args...]   (PYBPF_SKIP_KERNEL2=1 skips the second kernel)
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
# Each pytest run leaves a JSON report (tests/conftest.py, $PYBPF_RESULTS) for tools/feature-summary.py.
results=$(mktemp -d "${TMPDIR:-/tmp}/pybpf-results.XXXXXX")
trap 'rm -rf "$results"' EXIT
reports=()

echo "== ruff"; ruff check pybpf tests tools bench examples || status=1
echo "== mypy"; mypy || status=1

echo "== pytest on $(uname -r)"
PYBPF_RESULTS="$results/host.json" python3 -m pytest -q -rs "$@"
rc=$?
[ $rc -eq 5 ] && { echo "pytest collected no tests"; rc=1; }
[ $rc -ne 0 ] && status=1
[ -f "$results/host.json" ] && reports+=("$results/host.json")

if [ "${PYBPF_SKIP_KERNEL2:-0}" != 1 ] && python3 -c "import pybpf.cli.vmtest" 2>/dev/null; then
  echo "== pytest -m kernel2 on Debian 6.1 (qemu)"
  # The guest's files vanish with it: it prints its report between marker lines, kept in the log and hidden here.
  PYBPF_RESULTS="$results/kernel2.json" \
    pybpf vmtest --debian 6.1 -- python3 -m pytest -q -rs -m kernel2 -p no:cacheprovider "$@" \
    | tee "$results/kernel2.log" | sed -u '/^pybpf-results-begin/,/^pybpf-results-end/d'
  rc=${PIPESTATUS[0]}
  [ $rc -eq 5 ] && rc=0  # no kernel2 tests selected yet
  [ $rc -ne 0 ] && status=1
  reports+=("$results/kernel2.log")
fi

if [ -x tools/feature-summary.py ] && [ ${#reports[@]} -gt 0 ]; then
  echo "== features by kernel"
  python3 tools/feature-summary.py "${reports[@]}" || status=1
fi
exit $status
