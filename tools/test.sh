#!/usr/bin/env bash
# The test command: lint, types, the full suite on this kernel, then the kernel2 subset on Debian 6.1.
# Usage: bash tools/test.sh [pytest args...]   (PYBPF_SKIP_KERNEL2=1 skips the second kernel)
set -uo pipefail
cd "$(dirname "$0")/.."
status=0

echo "== ruff"; ruff check pybpf tests tools bench examples || status=1
echo "== mypy"; mypy || status=1

echo "== pytest on $(uname -r)"
python3 -m pytest -q -rs "$@"
rc=$?
[ $rc -eq 5 ] && { echo "pytest collected no tests"; rc=1; }
[ $rc -ne 0 ] && status=1

if [ "${PYBPF_SKIP_KERNEL2:-0}" != 1 ] && python3 -c "import pybpf.cli.vmtest" 2>/dev/null; then
  echo "== pytest -m kernel2 on Debian 6.1 (qemu)"
  pybpf vmtest --debian 6.1 -- python3 -m pytest -q -rs -m kernel2 -p no:cacheprovider "$@"
  rc=$?
  [ $rc -eq 5 ] && rc=0  # no kernel2 tests selected yet
  [ $rc -ne 0 ] && status=1
fi

[ -x tools/feature-summary.py ] && python3 tools/feature-summary.py || true
exit $status
