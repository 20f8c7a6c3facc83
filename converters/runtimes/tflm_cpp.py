"""Run a .tflite in a real TensorFlow Lite Micro C++ build on the host.

A small runner (``tflm_runner.cc``) is compiled against the host TFLM
library (:mod:`converters.runtimes.tflm_build`) together with the model
header :mod:`converters.targets.micro_emit` generates, so it registers the
model's ops exactly as an emitted firmware does; it reads the model bytes
from a file and uses a plain ``tflite::MicroInterpreter`` with the arena size
it is given. One runner is compiled (and cached in the library's folder) per
set of ops and architecture. Every run is its own process: an undersized
arena can crash TFLM.

:func:`find_arena` bisects the smallest working arena at 16-byte steps,
:func:`run` returns outputs.

Example:
    >>> minimum, commit = find_arena(tflite, arch="m32")
    >>> outs = run(tflite, [x_int8], arena_size=minimum + 64, arch="m32")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from converters.runtimes import tflm_arena, tflm_build
from converters.tflite import flatbuffer

__all__ = ["CppUnavailable", "find_arena", "run", "runner", "runs_with_arena"]

_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "tflm_runner.cc")
_NS = "tfc_runner"


class CppUnavailable(RuntimeError):
    """No C++ build is possible for this model here (one line says why)."""


def _lib(arch: str, log) -> tflm_build.HostLibrary:
    try:
        return tflm_build.library(arch, log=log)
    except tflm_build.TflmBuildError as exc:
        raise CppUnavailable(str(exc)) from None


def runner(tflite: bytes, arch: str = "64", *,
           log: Callable[[str], None] | None = tflm_build.say) -> tuple[str, str]:
    """The runner binary for the model's ops and ``arch``, compiled once.

    Returns:
        ``(path to the binary, TFLM commit)``.

    Raises:
        CppUnavailable: no library, or the model needs a kernel the host
            library lacks (the message names the op).
    """
    from converters.targets import micro_emit
    from converters.targets.micro import resolver_methods
    lib = _lib(arch, log)
    info = flatbuffer.read(bytes(tflite))
    methods = resolver_methods(info)
    with open(_RUNNER, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source + " ".join(methods).encode()
                         + " ".join(lib.flags).encode()).hexdigest()[:16]
    folder = os.path.join(lib.root, "runners", key)
    exe = os.path.join(folder, "tflm_runner")
    if os.path.exists(exe):
        return exe, lib.commit
    os.makedirs(folder, exist_ok=True)
    refused = os.path.join(folder, "refused.txt")
    with tflm_build.locked(os.path.join(folder, ".lock")):
        if os.path.exists(exe):
            return exe, lib.commit
        _raise_if_refused(refused, lib)
        header = micro_emit.render_header(info, name=_NS, arena=None,
                                          methods=methods)
        with open(os.path.join(folder, f"{_NS}_data.h"), "w") as f:
            f.write(header)
        cmd = [os.environ.get("CXX", "g++"), *lib.flags, "-O1", "-Wall",
               "-Wextra", "-Werror", f"-I{folder}",
               f'-DTFC_OPS_HEADER="{_NS}_data.h"', f"-DTFC_NS={_NS}", _RUNNER,
               *lib.libs, "-o", exe + ".tmp"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            missing = sorted(set(re.findall(r"undefined reference to "
                                            r"[`'\"]?tflite::(Register_\w+)",
                                            proc.stderr)))
            if missing:
                why = (f"the host TFLM library ({arch}) lacks kernels the "
                       f"model needs ({', '.join(missing)}); rebuild it with "
                       f"--all-kernels")
                with open(refused, "w") as f:   # not again with this library
                    f.write(_fingerprint(lib) + "\n" + why)
                raise CppUnavailable(why)
            raise CppUnavailable(f"the TFLM runner did not compile ({arch}): "
                                 f"{_first_error(proc.stderr)}")
        os.replace(exe + ".tmp", exe)
    return exe, lib.commit


def _fingerprint(lib: tflm_build.HostLibrary) -> str:
    """Size and mtime of each library file: a rebuilt library differs."""
    return ";".join(f"{os.path.getsize(p)}:{os.path.getmtime(p)}"
                    for p in lib.libs if os.path.exists(p))


def _raise_if_refused(path: str, lib: tflm_build.HostLibrary) -> None:
    """A runner that failed to link against this very library (missing
    kernels) fails again at once instead of after a compile."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        fingerprint, _, why = f.read().partition("\n")
    if fingerprint == _fingerprint(lib):
        raise CppUnavailable(why)


def _first_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "error" in ln]
    return (lines or stderr.splitlines() or ["no output"])[0].strip()


def _probe(exe: str, model: str, arena: int, timeout: float) -> bool:
    try:
        proc = subprocess.run([exe, model, str(int(arena))],
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


@contextlib.contextmanager
def _model_file(tflite: bytes):
    with tempfile.TemporaryDirectory(prefix="tfc-cpp-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(bytes(tflite))
        yield tmp, path


def runs_with_arena(tflite: bytes, arena_size: int, arch: str = "64", *,
                    timeout: float = 60.0) -> bool:
    """Whether the C++ build allocates and invokes the model (zeros) once."""
    exe, _ = runner(tflite, arch)
    with _model_file(tflite) as (_, path):
        return _probe(exe, path, arena_size, timeout)


def find_arena(tflite: bytes, arch: str = "64", *, start: int | None = None,
               timeout: float = 60.0,
               log: Callable[[str], None] | None = tflm_build.say
               ) -> tuple[int, str]:
    """The smallest arena (multiple of 16 B) a plain ``MicroInterpreter`` runs
    the model with in the C++ build for ``arch``.

    Assumes that more arena never hurts; each probe (allocate + one invoke
    on zeros) is its own process.

    Returns:
        ``(minimum bytes, TFLM commit)``.

    Raises:
        CppUnavailable: no C++ build for this model here.
        MicroError: the model does not run even with a 64 MiB arena.
    """
    from converters.targets.micro import MicroError
    exe, commit = runner(tflite, arch, log=log)
    g = tflm_arena.ARENA_GRANULARITY
    with _model_file(tflite) as (_, path):
        def ok(n: int) -> bool:
            return _probe(exe, path, n, timeout)
        if not ok(tflm_arena.ARENA_CEILING):
            raise MicroError(f"the TFLM C++ build ({arch}) cannot run the "
                             f"model even with a 64 MiB arena")
        hi = tflm_arena.smallest_arena(ok, max(g, -(-(start or 4096) // g) * g))
    return hi, commit


def run(tflite: bytes, inputs: Sequence[np.ndarray], *, arena_size: int,
        arch: str = "64", timeout: float = 120.0) -> list[np.ndarray]:
    """Run ``[N, ...]`` inputs (one array per model input, in the input
    tensors' dtypes) through the C++ build, one invoke per sample.

    Returns:
        One array per output, ``[N, *output_shape[1:]]``.

    Raises:
        CppUnavailable: no C++ build for this model here.
        MicroError: the run failed (e.g. the arena is too small).
    """
    from converters.targets.micro import _NP_DTYPES, MicroError
    info = flatbuffer.read(bytes(tflite))
    exe, _ = runner(tflite, arch)
    xs = [np.asarray(x) for x in inputs]
    n = xs[0].shape[0]
    outs = [(t, np.dtype(_NP_DTYPES[t.dtype]),
             int(np.prod(t.shape[1:])) if t.shape else 1)
            for t in info.output_details]
    with _model_file(tflite) as (tmp, path):
        in_path, out_path = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        with open(in_path, "wb") as f:
            for i in range(n):
                for x, t in zip(xs, info.input_details):
                    f.write(np.ascontiguousarray(
                        x[i], _NP_DTYPES[t.dtype]).tobytes())
        try:
            proc = subprocess.run([exe, path, str(int(arena_size)), in_path,
                                   out_path], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise MicroError(f"the TFLM C++ run ({arch}) timed out after "
                             f"{timeout:.0f} s") from None
        if proc.returncode != 0:
            what = {2: "AllocateTensors failed", 3: "Invoke failed"}.get(
                proc.returncode, f"exit {proc.returncode}")
            raise MicroError(f"the TFLM C++ run ({arch}) with a {arena_size}-"
                             f"byte arena failed: {what} "
                             f"{proc.stderr.strip()[:200]}".strip())
        raw = np.fromfile(out_path, np.uint8)
    per_sample = sum(dt.itemsize * size for _, dt, size in outs)
    if raw.size != n * per_sample:
        raise MicroError(f"the TFLM C++ run ({arch}) wrote {raw.size} bytes, "
                         f"expected {n * per_sample}")
    rows = raw.reshape(n, per_sample)
    result, offset = [], 0
    for t, dt, size in outs:
        width = dt.itemsize * size
        block = np.ascontiguousarray(rows[:, offset:offset + width])
        result.append(block.view(dt).reshape(n, *t.shape[1:]))
        offset += width
    return result
