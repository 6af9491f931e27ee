"""Compile BPF C with clang, cached by the content of the source and everything it includes.

Cache layout (under `cache_root()/build`): `<key>.json` is a manifest for one (source path, flags, clang)
combination; it lists the files the last few compiles depended on (from clang's `-MD` output) with their
content hashes, and the object each produced (`<object-key>.o`, named by the hash of all those contents).
A hit costs a stat or a hash per dependency and no subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from pybpf._cache import write_atomically
from pybpf.errors import BPFError
from pybpf.toolchain._paths import cache_root, clang_identity, find_clang, include_dirs, target_arch_define
from pybpf.toolchain.vmlinux import ensure_vmlinux_h

__all__ = ["BASE_CFLAGS", "CompileError", "CompileResult", "build_cache_dir", "compile", "compile_with_info"]

# -g is what makes clang emit .BTF/.BTF.ext; -O2 because the BPF backend cannot handle unoptimised code.
BASE_CFLAGS: tuple[str, ...] = ("-O2", "-g", "-target", "bpf", "-mcpu=v3")

_CACHE_FORMAT = "1"
_MAX_MANIFEST_ENTRIES = 8
# Headers under these roots change only with package upgrades, so size+mtime+inode is enough to validate them.
_STABLE_ROOTS = ("/usr/include/", "/usr/lib/", "/usr/local/include/", "/usr/local/lib/", "/usr/share/")
_INCLUDE_RE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.M)


class CompileError(BPFError):
    """clang failed. `diagnostics` is clang's stderr verbatim (file:line:col: error: ...).

    A BPFError (not an ObjectError): the problem is in the C source, not in an object file.
    """

    def __init__(self, source: str, argv: Sequence[str], returncode: int, diagnostics: str) -> None:
        self.source = source
        self.argv = list(argv)
        self.returncode = returncode
        self.diagnostics = diagnostics
        text = diagnostics.rstrip() or "(clang printed nothing)"
        super().__init__(f"clang failed to compile {source} (exit {returncode}):\n{text}", 0, "clang")


class _Entry(TypedDict):
    deps: list[list[str]]  # [path, stat token, content hash]
    object: str
    warnings: str


@dataclass(frozen=True)
class CompileResult:
    path: Path  # the object file
    cached: bool  # True when no compile ran
    warnings: str  # clang's stderr from the compile that produced the object (empty when clean)
    argv: tuple[str, ...]  # the clang command line (with a placeholder output path when cached)


def build_cache_dir() -> Path:
    return cache_root() / "build"


def compile(
    source: str | Path,
    output: str | Path | None = None,
    *,
    cflags: Sequence[str] = (),
    include: Sequence[str | Path] = (),
    cache: bool = True,
) -> Path:
    """Compile a BPF C file to an object and return its path.

    With `cache` and no `output`, the path is inside the cache: treat it as read-only. With `output`, the
    object is copied there. With `cache=False` and no `output`, it is written next to the source
    (`x.bpf.c` -> `x.bpf.o`). Raises CompileError carrying clang's diagnostics.
    """
    return compile_with_info(source, output, cflags=cflags, include=include, cache=cache).path


def compile_with_info(
    source: str | Path,
    output: str | Path | None = None,
    *,
    cflags: Sequence[str] = (),
    include: Sequence[str | Path] = (),
    cache: bool = True,
) -> CompileResult:
    """Like compile(), also telling whether the cache answered and what clang warned about."""
    src = Path(source).resolve()
    if not src.is_file():
        raise CompileError(str(source), (), 0, f"{source}: no such file")
    clang = find_clang()
    user_includes = [str(Path(d).resolve()) for d in include]
    include_args = [*user_includes]
    if _includes_vmlinux_h(src, [*user_includes, *_include_dirs_in(cflags)]):
        include_args.append(str(ensure_vmlinux_h().parent))
    include_args += include_dirs()
    flags = [*BASE_CFLAGS, target_arch_define(), *(f"-I{d}" for d in include_args), *cflags]

    if not cache:
        out = Path(output) if output is not None else _default_output(src)
        direct_argv = (clang, *flags, "-c", str(src), "-o", str(out))
        warnings = _run_clang(direct_argv, src)
        return CompileResult(out.resolve(), False, warnings, direct_argv)

    cache_dir = build_cache_dir()
    key = _hash_text(
        _CACHE_FORMAT,
        clang_identity(clang),
        str(src),
        *flags,
        # relative paths in user cflags (-I.., -include) resolve against the working directory
        os.getcwd() if cflags else "",
    )
    manifest_path = cache_dir / f"{key}.json"
    entries = _read_manifest(manifest_path)
    for known in entries:
        obj = cache_dir / known["object"]
        if _deps_unchanged(known["deps"]) and obj.exists():
            hit_argv = (clang, *flags, "-c", str(src), "-o", str(obj))
            return CompileResult(_deliver(obj, output), True, known.get("warnings", ""), hit_argv)

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".compile-") as tmp:
        tmp_obj = Path(tmp) / "out.o"
        depfile = Path(tmp) / "out.d"
        argv_list = [clang, *flags, "-MD", "-MF", str(depfile), "-c", str(src), "-o", str(tmp_obj)]
        warnings = _run_clang(argv_list, src)
        deps = [_fingerprint(p) for p in _parse_depfile(depfile.read_text())]
        object_name = _hash_text(key, *(d[2] for d in deps)) + ".o"
        obj = cache_dir / object_name
        os.replace(tmp_obj, obj)
    entry: _Entry = {"deps": deps, "object": object_name, "warnings": warnings}
    # Re-read: another process may have added entries meanwhile. Losing one in a race only costs a rebuild.
    others = [e for e in _read_manifest(manifest_path) if e["object"] != object_name]
    _write_json(manifest_path, [entry, *others][:_MAX_MANIFEST_ENTRIES])
    argv = (clang, *flags, "-c", str(src), "-o", str(obj))
    return CompileResult(_deliver(obj, output), False, warnings, argv)


def _default_output(src: Path) -> Path:
    return src.with_suffix(".o") if src.suffix == ".c" else src.with_name(src.name + ".o")


def _run_clang(argv: Sequence[str], src: Path) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise CompileError(str(src), argv, -1, f"could not run {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        raise CompileError(str(src), argv, result.returncode, result.stderr + result.stdout)
    return result.stderr


def _deliver(obj: Path, output: str | Path | None) -> Path:
    if output is None:
        return obj
    out = Path(output)
    write_atomically(out, [obj.read_bytes()], mode=0o666)  # as a copy would be: the umask decides
    return out.resolve()


# ----- dependencies ---------------------------------------------------------------------------------------


def _includes_vmlinux_h(src: Path, user_includes: Sequence[str]) -> bool:
    """Whether the source or a local header it includes (transitively) includes vmlinux.h."""
    pending = [src]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            text = path.read_bytes()
        except OSError:
            continue
        for quote, name in _INCLUDE_RE.findall(text):
            header = name.decode(errors="replace")
            if os.path.basename(header) == "vmlinux.h":
                # a user-supplied vmlinux.h (next to the source or in -I) wins over the generated one
                return _find_local_header(header, path.parent, user_includes, quote == b'"') is None
            if quote == b'"':
                found = _find_local_header(header, path.parent, user_includes, True)
                if found is not None:
                    pending.append(found)
    return False


def _include_dirs_in(cflags: Sequence[str]) -> list[str]:
    """-I dirs given through cflags (`-Idir` or `-I dir`), absolute."""
    dirs: list[str] = []
    for i, flag in enumerate(cflags):
        if flag == "-I" and i + 1 < len(cflags):
            dirs.append(os.path.abspath(cflags[i + 1]))
        elif flag.startswith("-I") and len(flag) > 2:
            dirs.append(os.path.abspath(flag[2:]))
    return dirs


def _find_local_header(
    name: str, includer_dir: Path, user_includes: Sequence[str], quoted: bool
) -> Path | None:
    dirs = [includer_dir, *map(Path, user_includes)] if quoted else list(map(Path, user_includes))
    for directory in dirs:
        candidate = directory / name
        if candidate.is_file():
            return candidate.resolve()
    return None


def _parse_depfile(text: str) -> list[str]:
    """Prerequisites of a Make-style depfile written by clang -MD (handles `\\ ` escapes and continuations)."""
    body = text.replace("\\\r\n", " ").replace("\\\n", " ")
    colon = body.find(": ")
    if colon < 0:
        return []
    deps: list[str] = []
    current: list[str] = []
    chars = body[colon + 2 :]
    i = 0
    while i < len(chars):
        ch = chars[i]
        if ch == "\\" and i + 1 < len(chars) and chars[i + 1] in " #\\":
            current.append(chars[i + 1])
            i += 2
            continue
        if ch == "$" and i + 1 < len(chars) and chars[i + 1] == "$":
            current.append("$")
            i += 2
            continue
        if ch.isspace():
            if current:
                deps.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if current:
        deps.append("".join(current))
    return list(dict.fromkeys(os.path.abspath(d) for d in deps))


def _is_stable(path: str) -> bool:
    return path.startswith((*_STABLE_ROOTS, os.path.abspath(cache_root()) + os.sep))


def _stat_token(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _fingerprint(path: str) -> list[str]:
    """[path, stat token, content hash] of one dependency."""
    return [path, _stat_token(path), _hash_file(path)]


def _deps_unchanged(deps: Iterable[list[str]]) -> bool:
    try:
        for path, stat_token, content_hash in deps:
            if _is_stable(path):
                if _stat_token(path) != stat_token:
                    return False
            # Local files are always re-hashed: mtimes are too coarse to catch an edit made right after a build.
            elif _hash_file(path) != content_hash:
                return False
    except (OSError, ValueError):
        return False
    return True


def _hash_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()[:40]


def _hash_text(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _read_manifest(path: Path) -> list[_Entry]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [
        _Entry(deps=e["deps"], object=e["object"], warnings=str(e.get("warnings", "")))
        for e in data
        if isinstance(e, dict) and isinstance(e.get("object"), str) and isinstance(e.get("deps"), list)
    ]


def _write_json(path: Path, data: object) -> None:
    with contextlib.suppress(OSError):
        write_atomically(path, [json.dumps(data).encode()])
