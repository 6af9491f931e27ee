#!/usr/bin/env bash
# Install everything pybpf, its tests and its benchmarks need on a fresh Debian machine (as root).
# Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(clang llvm libbpf-dev bpftool bpftrace systemtap-sdt-dev iproute2 linux-libc-dev gcc make)
missing=()
for p in "${DEBS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

# BCC, a benchmark peer only: Debian's python3-bpfcc plus kernel headers to compile against (this kernel has
# none; bench/_bcc.py explains). Optional: the benchmarks skip BCC when it is missing.
if ! dpkg -s python3-bpfcc >/dev/null 2>&1 || ! ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
  headers=$(apt-cache search --names-only '^linux-headers-[0-9.]+-[0-9]+-amd64$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-bpfcc ${headers:+"$headers"} \
    >/dev/null 2>&1 || echo "BCC (a benchmark peer) could not be installed; the benchmarks will skip it"
fi

python3 -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e ".[dev]" 2>&1 | grep -v -e "WARNING: Running pip as" -e "is ignored: it is neither" || true

# Byte-compile once: environments with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module at
# every start, which costs pybpf's start-up ~100 ms.
python3 -m compileall -q pybpf >/dev/null 2>&1 || true

# The second kernel (Debian 6.1 under qemu) for the kprobe/fentry/LSM tests.
if [ -f tools/install-kernel2.sh ] && [ "${PYBPF_SKIP_KERNEL2:-0}" != 1 ]; then
  bash tools/install-kernel2.sh
fi
echo "pybpf installed: $(command -v pybpf)"
