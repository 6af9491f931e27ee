"""Run one command as root under another kernel: qemu (TCG), the host's root over 9p, a tmpfs overlay on top.

Serial ports carry the data, each to a pipe: ttyS0 is the kernel console (its tail is shown on failure),
ttyS1 the command's stdout, ttyS2 its stderr, ttyS3 the exit status. The guest reboots when the command ends and
qemu (`-no-reboot`) exits.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pybpf
from pybpf.vmtest.initramfs import ROOT_TAG, build_initramfs, find_busybox
from pybpf.vmtest.kernels import (
    KernelImage,
    VMTestError,
    ensure_debian_kernel,
    kernel_from_vmlinuz,
    pvh_vmlinux,
)

__all__ = ["GUEST_ENV_VAR", "in_guest", "resolve_kernel", "run"]

# Set to "1" inside the guest so that code (and tests) can tell they run under the runner.
GUEST_ENV_VAR = "PYBPF_VMTEST"

# Host variables handed to the command in the guest (plus PYBPF_* and whatever `env` gives).
PASSED_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONHASHSEED",
    "PYTEST_ADDOPTS", "CI", "NO_COLOR", "FORCE_COLOR", "PY_COLORS", "COLUMNS", "CC", "CLANG",
)

STATUS_PREFIX = b"pybpf-vmtest-exit "
FAILED_PREFIX = b"pybpf-vmtest-failed "

# Sourced by the initramfs's busybox sh before switching root; the new root is at $R. Generated per run.
_SETUP = """\
R=/newroot
m() { $B mkdir -p "$R$3" && $B mount -t "$1" $4 "$2" "$R$3" || $B echo "pybpf-vmtest: cannot mount $1 on $3" > $R/dev/console; }
m devpts devpts /dev/pts "-o gid=5,mode=620,ptmxmode=666"
m tmpfs tmpfs /dev/shm "-o mode=1777"
m tmpfs tmpfs /run "-o mode=0755"
m tracefs tracefs /sys/kernel/tracing
m debugfs debugfs /sys/kernel/debug
m bpf bpffs /sys/fs/bpf "-o mode=0700"
m cgroup2 cgroup2 /sys/fs/cgroup
$B ln -sf /proc/self/fd $R/dev/fd
$B ln -sf /proc/self/fd/0 $R/dev/stdin
$B ln -sf /proc/self/fd/1 $R/dev/stdout
$B ln -sf /proc/self/fd/2 $R/dev/stderr
@MODULES_BIND@
$B hostname pybpf-vmtest
$B ip link set lo up
for t in ttyS1 ttyS2; do $B stty -F $R/dev/$t clocal raw -echo @STTY_SIZE@; done
# An oops reboots the guest at once (no status: the runner reports the console) instead of hanging the test.
$B echo 1 > $R/proc/sys/kernel/panic_on_oops
"""

# Run by the host's /bin/sh as PID 1 on the new root. Generated per run.
_COMMAND = """\
@ENV@
cd @CWD@ || { echo "pybpf-vmtest: cannot cd to @CWD@" >/dev/ttyS2; echo "pybpf-vmtest-exit 125" >/dev/ttyS3; @BUSYBOX@ reboot -f; }
@CMD@ </dev/null >/dev/ttyS1 2>/dev/ttyS2
echo "pybpf-vmtest-exit $?" >/dev/ttyS3
@BUSYBOX@ reboot -f
"""


def in_guest() -> bool:
    """True when running inside a guest started by `run`."""
    return os.environ.get(GUEST_ENV_VAR) == "1"


def resolve_kernel(kernel: str | os.PathLike[str] | KernelImage | None, debian: str | None = None, *,
                   modules: str | os.PathLike[str] | None = None) -> KernelImage:
    """A `KernelImage` from an explicit image path (with its /lib/modules/RELEASE directory `modules`, else
    found beside it), else Debian's linux-image-`debian` (None: `ensure_debian_kernel`'s default version)."""
    if isinstance(kernel, KernelImage):
        return kernel
    if kernel is not None:
        return kernel_from_vmlinuz(kernel, modules)
    return ensure_debian_kernel() if debian is None else ensure_debian_kernel(debian)


def _package_root() -> Path:
    """The directory that holds the `pybpf` package this process runs, so the guest imports the same one."""
    return Path(pybpf.__file__).resolve().parent.parent


def _guest_env(env: Mapping[str, str] | None, stdout_is_tty: bool) -> dict[str, str]:
    result = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    result.update({k: v for k, v in os.environ.items() if k.startswith("PYBPF_")})
    result.setdefault("HOME", "/root")
    result.setdefault("LANG", "C.UTF-8")
    result["TERM"] = os.environ.get("TERM", "dumb") if stdout_is_tty else "dumb"
    # The interpreter running pybpf comes first, so `python3` in the guest is the same one (and not a
    # pyenv shim, which costs seconds under emulation); the sbin directories hold ip, modprobe, mount.
    path = [p for p in result.get("PATH", "").split(":") if p]
    path.insert(0, os.path.dirname(sys.executable))
    path += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    result["PATH"] = ":".join(dict.fromkeys(path))
    root = str(_package_root())
    python_path = [p for p in result.get("PYTHONPATH", "").split(":") if p]
    result["PYTHONPATH"] = ":".join([root, *[p for p in python_path if p != root]])
    if env:
        result.update(env)
    result[GUEST_ENV_VAR] = "1"
    return result


def _scripts(
    cmd: Sequence[str], cwd: str, env: Mapping[str, str], kernel: KernelImage, columns: int | None
) -> tuple[str, str]:
    """The per-run setup script (sourced before the root switch) and command script (run after it)."""
    mods = ""
    if kernel.modules_dir is not None:
        target = shlex.quote(f"/lib/modules/{kernel.release}")
        # The host path is visible through the 9p root; bind it where modprobe (and the kernel) look.
        mods = f"$B mkdir -p $R{target} && $B mount --bind $R{shlex.quote(str(kernel.modules_dir))} $R{target}"
    if kernel.config is not None:
        # where an installed kernel keeps it: kconfig readers (pybpf's, libbpf's) fall back to it when the
        # kernel has no /proc/config.gz, as Debian's does not. The overlay root takes the copy.
        config = shlex.quote(f"/boot/config-{kernel.release}")
        mods += (f"\n$B mkdir -p $R/boot && $B cp $R{shlex.quote(str(kernel.config))} $R{config}")
    setup = (_SETUP.replace("@MODULES_BIND@", mods)
             .replace("@STTY_SIZE@", f"cols {columns} rows 50" if columns else ""))
    exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())
                        if name.isidentifier())
    command = (_COMMAND.replace("@ENV@", exports)
               .replace("@CWD@", shlex.quote(cwd))
               .replace("@CMD@", shlex.join(cmd))
               .replace("@BUSYBOX@", shlex.quote(str(find_busybox()))))
    return setup, command


def _qemu_binary() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VMTestError("qemu-system-x86_64 is missing: run tools/install-kernel2.sh (package qemu-system-x86)")
    return qemu


class _Pump(threading.Thread):
    """Copies one pipe from qemu to a stream as it arrives; keeps the last `keep` bytes when asked to."""

    def __init__(self, fd: int, sink: IO[Any] | None, keep: int = 0) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.sink = sink
        self.keep = keep
        self.kept = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _emit(self, data: bytes, final: bool = False) -> None:
        if self.keep:
            self.kept += data
            del self.kept[: -self.keep]
        if self.sink is None:
            return
        if isinstance(self.sink, io.TextIOBase):
            text = self.decoder.decode(data, final)
            if text:
                self.sink.write(text)
        elif data:
            self.sink.write(data)
        with contextlib.suppress(OSError, ValueError):
            self.sink.flush()

    def run(self) -> None:
        try:
            while data := os.read(self.fd, 65536):
                self._emit(data)
            self._emit(b"", final=True)
        finally:
            os.close(self.fd)


def _kernel_cmdline(run_dir: Path) -> str:
    run_param = f'pybpf_run="{run_dir}"' if any(c.isspace() for c in str(run_dir)) else f"pybpf_run={run_dir}"
    return " ".join([
        "console=ttyS0", "quiet", "loglevel=4", "panic=-1", "8250.nr_uarts=4", "random.trust_cpu=on",
        # Speculation mitigations only slow an emulated CPU down; timer checks and KASLR cost boot time.
        "mitigations=off", "no_timer_check", "tsc=reliable", "nokaslr",
        # The crypto self-tests take ~2 s under emulation and test nothing pybpf needs.
        "cryptomgr.notests=1",
        *shlex.split(os.environ.get("PYBPF_VMTEST_APPEND", "")),
        run_param,
    ])


def _qemu_args(
    qemu: str, boot_image: Path, initramfs: Path, cmdline: str, memory: str, cpus: int, port_fds: Sequence[int]
) -> list[str]:
    """qemu's command line: TCG (a stock kernel cannot use this machine's /dev/kvm), the host root over
    9p read-only, and serial ports 0..4 = console, stdout, stderr, status (passed in as pipe fds)."""
    args = [
        qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        # A capped translation cache: left alone it grows past 1 GB.
        "-machine", "pc", "-accel", "tcg,tb-size=256", "-cpu", "max",
        "-smp", str(cpus), "-m", memory,
        "-kernel", str(boot_image), "-initrd", str(initramfs), "-append", cmdline,
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", f"virtio-9p-pci,fsdev=root,mount_tag={ROOT_TAG}",
    ]
    for index, fd in enumerate(port_fds):
        args += ["-chardev", f"file,id=port{index},path=/proc/self/fd/{fd},append=on",
                 "-serial", f"chardev:port{index}"]
    return args + shlex.split(os.environ.get("PYBPF_VMTEST_QEMU_ARGS", ""))


def run(
    cmd: Sequence[str],
    kernel: str | os.PathLike[str] | KernelImage | None = None,
    debian: str | None = None,
    memory: str = "2G",
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    cpus: int = 2,
    timeout: float | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
    console: IO[Any] | None = None,
) -> int:
    """Boot `kernel` (default: Debian's `debian` kernel, see `resolve_kernel`) under qemu and run `cmd` as
    root in it.

    The guest sees the host's root filesystem read-only with a tmpfs overlay, has proc, sys, devtmpfs,
    tracefs, debugfs, bpffs and cgroup2 mounted, loopback up and `PYBPF_VMTEST=1` set, and starts in
    `cwd` (default: the current directory). The command's stdout and stderr are streamed to `stdout` /
    `stderr` (default: `sys.stdout` / `sys.stderr`; text streams get UTF-8 text, others bytes), and
    `console`, when given, gets the guest kernel's console as it comes. Returns the command's exit status.
    Raises `VMTestError` when the VM cannot start, times out or reports no status (the message holds
    the tail of the console log).
    """
    if not cmd:
        raise VMTestError("no command to run in the guest")
    if in_guest():
        raise VMTestError("already inside a pybpf vmtest guest: a nested emulated VM would take minutes to boot")
    image = resolve_kernel(kernel, debian)
    workdir = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    if not os.path.isdir(workdir):
        raise VMTestError(f"working directory {workdir} does not exist")
    out_sink = stdout if stdout is not None else sys.stdout
    err_sink = stderr if stderr is not None else sys.stderr
    try:
        is_tty = out_sink.isatty()
    except (AttributeError, ValueError):
        is_tty = False
    guest_env = _guest_env(env, is_tty)
    columns = shutil.get_terminal_size((0, 0)).columns if is_tty else None
    qemu = _qemu_binary()
    boot_image = pvh_vmlinux(image) or image.vmlinuz

    with tempfile.TemporaryDirectory(prefix="pybpf-vmtest-") as tmp:
        run_dir = Path(tmp)
        # The guest reads these through the read-only 9p root (as root, but keep them world-readable).
        os.chmod(run_dir, 0o755)
        initramfs = run_dir / "initramfs.cpio"
        initramfs.write_bytes(build_initramfs(image))
        setup, command = _scripts(cmd, workdir, guest_env, image, columns)
        (run_dir / "setup.sh").write_text(setup)
        (run_dir / "command.sh").write_text(command)
        qemu_log = run_dir / "qemu.log"

        pipes = [os.pipe() for _ in range(4)]  # console, stdout, stderr, status
        pumps = [
            _Pump(pipes[0][0], console, keep=64 * 1024),
            _Pump(pipes[1][0], out_sink),
            _Pump(pipes[2][0], err_sink),
            _Pump(pipes[3][0], None, keep=4096),
        ]
        args = _qemu_args(qemu, boot_image, initramfs, _kernel_cmdline(run_dir), memory, cpus,
                          [w for _, w in pipes])
        with open(qemu_log, "wb") as qemu_err:
            try:
                process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=qemu_err, stderr=qemu_err,
                                           pass_fds=[w for _, w in pipes])
            except BaseException:
                for read_end, _ in pipes:
                    os.close(read_end)
                raise
            finally:
                for _, write_end in pipes:
                    os.close(write_end)
            for pump in pumps:
                pump.start()
            try:
                process.wait(timeout=timeout)
            except BaseException as exc:
                process.kill()
                process.wait()
                for pump in pumps:
                    pump.join()
                if isinstance(exc, subprocess.TimeoutExpired):
                    raise VMTestError(f"the guest did not finish within {timeout} s"
                                      + _diagnostics(pumps[0].kept, qemu_log), timed_out=True) from None
                raise
        for pump in pumps:
            pump.join()
        status = bytes(pumps[3].kept)
        for line in status.splitlines():
            if line.startswith(STATUS_PREFIX):
                return int(line[len(STATUS_PREFIX) :].strip() or b"125")
        reason = ("the guest stopped without reporting the command's exit status (a kernel panic or oops?)"
                  if pumps[0].kept else "qemu could not start the guest")
        for line in status.splitlines():
            if line.startswith(FAILED_PREFIX):
                reason = "the guest's init failed: " + line[len(FAILED_PREFIX) :].decode(errors="replace")
        raise VMTestError(f"{reason} (qemu exited {process.returncode})" + _diagnostics(pumps[0].kept, qemu_log))


def _diagnostics(console: bytes | bytearray, qemu_log: Path) -> str:
    parts = []
    for title, text in (
        ("qemu", qemu_log.read_text(errors="replace") if qemu_log.exists() else ""),
        ("guest console", bytes(console).decode(errors="replace")),
    ):
        if text.strip():
            tail = "\n".join(text.strip().splitlines()[-40:])
            parts.append(f"\n--- {title} (last lines) ---\n{tail}")
    return "".join(parts)
