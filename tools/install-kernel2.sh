#!/bin/sh
# Installs what `pybpf vmtest` (the second-kernel runner) needs, and fetches Debian's 6.1 kernel into the cache.
# Idempotent: a second run installs and downloads nothing. Needs root (apt-get).
#   KERNEL2_VERSION  Debian kernel series to fetch (default 6.1)
#   PYTHON           interpreter that has pybpf importable (default python3)
set -eu

version="${KERNEL2_VERSION:-6.1}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")/.." && pwd)"

# qemu-system-x86: the emulator; busybox-static: the guest's init; kmod: depmod on the host, modprobe in the guest;
# dpkg: unpacking the kernel package without installing it.
packages="qemu-system-x86 busybox-static kmod dpkg"

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    # apt's lists may be missing on a fresh machine: update only when apt cannot see a package.
    for p in $missing; do
        if ! apt-cache show "$p" >/dev/null 2>&1; then
            apt-get update -qq
            break
        fi
    done
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Fetch (or find in the cache) the kernel and its unpacked vmlinux; prints where it is.
cd "$here"
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -c '
import sys
from pybpf.vmtest import ensure_debian_kernel
from pybpf.vmtest.kernels import pvh_vmlinux
image = ensure_debian_kernel(sys.argv[1])
pvh = pvh_vmlinux(image) or "none, boots the bzImage"
print(f"kernel2: {image.release}: {image.vmlinuz} (vmlinux: {pvh})")
' "$version"
