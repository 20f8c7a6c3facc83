"""A host build of the TensorFlow Lite Micro C++ library, made once per machine.

The TFLM sources are a trimmed, offline copy of tflite-micro with a
``build.sh`` (``../shared/tflm`` next to the repository, or the folder in
``TFCOMPRESS_TFLM_SRC``). :func:`library` builds ``libtensorflow-microlite.a``
(reference kernels, the default kernel set plus the DECODE op) for a 64-bit
host or with ``-m32`` (32-bit pointers and structs, as on a Cortex-M) into a
cache folder outside the repository, under a file lock, and reuses it:

* ``TFCOMPRESS_TFLM_CACHE``: cache root (default ``~/.cache/tfcompress``);
  builds go to ``<root>/tflm-<key>-<arch>``, ``key`` hashing ``build.sh``, the
  source lists and the compiler version.
* ``TFCOMPRESS_TFLM_BUILD``: ``auto`` (default) builds a missing library
  (about 2 min per architecture on 2 cores), ``never`` only uses finished
  builds.
* ``TFCOMPRESS_TFLM_KERNELS``: kernel sources to build (``build.sh
  --kernels``, e.g. ``"conv fully_connected pooling reshape softmax"``);
  default: ``build.sh``'s default set. A model needing a kernel the library
  lacks is measured with the Python runtime instead (labelled).

``python -m converters.runtimes.tflm_build`` builds both architectures.

Example:
    >>> lib = library("m32")
    >>> lib.flags[:2], lib.pointer_bytes
    (['-std=c++17', '-m32'], 4)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["ARCHES", "HostLibrary", "TflmBuildError", "library", "locked", "say",
           "source_dir", "unavailable_reason"]

ARCHES = ("m32", "64")  # 32-bit first: it is the figure a device needs
_DONE = ".tfcompress-complete"


class TflmBuildError(RuntimeError):
    """The TFLM host library cannot be built or used here."""


@dataclasses.dataclass(frozen=True)
class HostLibrary:
    """A finished build: what a consumer compiles and links with."""

    arch: str
    root: str
    flags: list[str]
    libs: list[str]
    commit: str

    @property
    def pointer_bytes(self) -> int:
        return 4 if self.arch == "m32" else 8


def _repo_root() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


def source_dir() -> str | None:
    """The TFLM package (with ``build.sh``): ``TFCOMPRESS_TFLM_SRC``, else
    ``shared/tflm`` beside the repository (or beside a folder above it, for
    a git worktree); None where there is none."""
    env = os.environ.get("TFCOMPRESS_TFLM_SRC")
    if env:
        candidates = [env]
    else:
        up = _repo_root()
        candidates = []
        for _ in range(3):
            up = os.path.dirname(up)
            candidates.append(os.path.join(up, "shared", "tflm"))
    for path in candidates:
        if os.path.isfile(os.path.join(path, "build.sh")):
            return path
    return None


def _cxx() -> str:
    return os.environ.get("CXX", "g++")


def _kernels() -> str:
    return " ".join(os.environ.get("TFCOMPRESS_TFLM_KERNELS", "").split())


def _key(src: str) -> str:
    h = hashlib.sha256(_kernels().encode())
    for name in ("build.sh", "lists/core_srcs.txt", "lists/kernel_srcs.txt"):
        with open(os.path.join(src, name), "rb") as f:
            h.update(f.read())
    version = subprocess.run([_cxx(), "--version"], capture_output=True,
                             text=True, check=False).stdout.splitlines()
    h.update((version[0] if version else _cxx()).encode())
    return h.hexdigest()[:12]


def _cache_root() -> str:
    return os.environ.get("TFCOMPRESS_TFLM_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfcompress")


def _read_words(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return shlex.split(f.read())


def _load(arch: str, out: str) -> HostLibrary:
    info = {}
    with open(os.path.join(out, "build_info.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition("=")
            info[key.strip()] = value.strip()
    return HostLibrary(arch=arch, root=out,
                       flags=_read_words(os.path.join(out, "flags.txt")),
                       libs=_read_words(os.path.join(out, "libs.txt")),
                       commit=info.get("commit", "unknown"))


def _m32_probe() -> str | None:
    """Why ``g++ -m32`` cannot link a C++ program here, or None if it can."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tfc-m32-") as tmp:
        src = os.path.join(tmp, "p.cc")
        with open(src, "w") as f:
            f.write("#include <cstdio>\nint main(){std::puts(\"ok\");}\n")
        proc = subprocess.run([_cxx(), "-m32", src, "-o",
                               os.path.join(tmp, "p")], capture_output=True,
                              text=True, check=False)
    if proc.returncode == 0:
        return None
    return (f"'{_cxx()} -m32' cannot link a C++ program (install "
            f"g++-multilib, e.g. apt-get install g++-multilib)")


def unavailable_reason(arch: str = "64") -> str | None:
    """One line on why :func:`library` cannot give ``arch`` here, or None.

    Does not build anything; a missing build counts as available while
    ``TFCOMPRESS_TFLM_BUILD`` is not ``never``.
    """
    src = source_dir()
    if src is None:
        return ("no TFLM sources here: set TFCOMPRESS_TFLM_SRC to a folder "
                "with build.sh, or put them in ../shared/tflm")
    if shutil.which(_cxx()) is None:
        return f"no C++ compiler ({_cxx()} not found)"
    if arch == "m32":
        reason = _m32_probe()
        if reason:
            return reason
    out = os.path.join(_cache_root(), f"tflm-{_key(src)}-{arch}")
    if (not os.path.exists(os.path.join(out, _DONE))
            and os.environ.get("TFCOMPRESS_TFLM_BUILD", "auto") == "never"):
        return (f"no finished TFLM build in {out} and TFCOMPRESS_TFLM_BUILD="
                f"never")
    return None


@contextlib.contextmanager
def locked(path: str):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def say(message: str) -> None:
    """The default progress output: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def library(arch: str = "64", *,
            log: Callable[[str], None] | None = say) -> HostLibrary:
    """The host TFLM library for ``arch`` (``"64"`` or ``"m32"``), built once.

    Concurrent callers (test workers, two conversions) wait on a file lock;
    the first builds, the others reuse its result.

    Raises:
        TflmBuildError: no sources, no (32-bit) compiler, building disabled,
            or the build failed (the message names the log file).
    """
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}. Got: {arch!r}")
    reason = unavailable_reason(arch)
    if reason:
        raise TflmBuildError(reason)
    src = source_dir()
    root = _cache_root()
    os.makedirs(root, exist_ok=True)
    out = os.path.join(root, f"tflm-{_key(src)}-{arch}")
    with locked(out + ".lock"):
        if os.path.exists(os.path.join(out, _DONE)):
            return _load(arch, out)
        cmd = ["bash", os.path.join(src, "build.sh"), out, "-j",
               str(os.cpu_count() or 2)] + (["--m32"] if arch == "m32" else [])
        if _kernels():
            cmd += ["--kernels", _kernels()]
        if shutil.which("nice"):
            cmd = ["nice", "-n", "10"] + cmd
        if log:
            log(f"building the TFLM host library ({arch}) once, about 2 min "
                f"on 2 cores: {out}")
        started = time.perf_counter()
        with open(out + ".log", "w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                  check=False)
        if proc.returncode != 0:
            raise TflmBuildError(f"building the TFLM host library ({arch}) "
                                 f"failed; see {out}.log")
        with open(os.path.join(out, _DONE), "w") as f:
            f.write(f"{time.perf_counter() - started:.0f} s\n")
        if log:
            log(f"built the TFLM host library ({arch}) in "
                f"{time.perf_counter() - started:.0f} s")
        return _load(arch, out)


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the libraries; one line each. Exit 1 only when a
    build failed; where none is possible here, say why and exit 0 (the C++
    checks then skip, and arenas fall back to labelled figures)."""
    code = 0
    for arch in (argv or list(ARCHES)):
        reason = unavailable_reason(arch)
        if reason:
            print(f"TFLM host library ({arch}): not available here: {reason}")
            continue
        try:
            started = time.perf_counter()
            lib = library(arch)
            print(f"TFLM host library ({arch}): {lib.root} "
                  f"({time.perf_counter() - started:.0f} s)")
        except TflmBuildError as exc:
            print(f"TFLM host library ({arch}): {exc}")
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
