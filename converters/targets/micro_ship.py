"""The model a micro artifact ships, and everything derived from it.

A micro artifact ships exactly one ``.tflite``: the plain int8 model, or a
variant whose constant tensors are stored encoded (LUT, PRUNE, HUFFMAN: what
the flash/RAM plan of :mod:`converters.encodings.planner` chooses).
:func:`ship` takes those bytes and derives the rest from them alone: the
arena (:func:`measure_arena`), a check that the TFLM C++
build gives the same outputs as the Python TFLM interpreter, and
(:meth:`Shipped.fit`) the device-budget verdict, which thus describes
exactly the array and the arena the C source carries.

Example:
    >>> shipped = ship(encoded, encoding="huffman", file="model.tflite",
    ...                python_minimum=5200, inputs=[x_int8])
    >>> shipped.fit("cortex-m4")["fits"], shipped.arena.bytes
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from converters.runtimes.tflm_build import say
from converters.targets.micro_arena import CPP, PYTHON, ArenaFigures

__all__ = ["MAX_CHECK_SAMPLES", "Shipped", "label", "measure_arena",
           "report_lines", "ship"]

MAX_CHECK_SAMPLES = 256  # samples compared between the C++ and Python runs



def label(encoding: str) -> str:
    """What the shipped bytes are, in words (``"huffman+prune"`` ->
    ``"HUFFMAN+PRUNE-encoded weights (DECODE op)"``)."""
    if encoding in ("", "none"):
        return "plain int8"
    return f"{encoding.upper()}-encoded weights (DECODE op)"


@dataclasses.dataclass
class Shipped:
    """One shipped model: its bytes, what they are, their arena, the check."""

    tflite: bytes
    encoding: str
    file: str
    arena: ArenaFigures
    cpp_check: dict = dataclasses.field(default_factory=dict)

    @property
    def bytes(self) -> int:
        """Flash for the model: the length of the emitted array."""
        return len(self.tflite)

    @property
    def description(self) -> str:
        return f"{self.file} ({label(self.encoding)})"

    @property
    def passed(self) -> bool:
        """False only when a C++ run disagreed with the Python interpreter."""
        return all(c.get("agrees", c.get("identical", True))
                   for c in self.cpp_check.values() if isinstance(c, dict))

    def fit(self, profile=None, **kwargs) -> dict:
        """:func:`converters.targets.budgets.fit` for exactly this array and
        this arena (the 32-bit ``kTensorArenaSize``)."""
        from converters.targets import budgets
        return budgets.fit(profile, model_bytes=self.bytes,
                           arena_bytes=self.arena.bytes, **kwargs)

    def to_report(self) -> dict:
        return {"file": self.file, "encoding": self.encoding,
                "array_bytes": self.bytes, "arena": self.arena.to_dict(),
                "cpp_check": self.cpp_check}


def _check_outputs(tflite: bytes, inputs: Sequence[np.ndarray],
                   arena: ArenaFigures) -> dict:
    """Run the inputs in the C++ build(s) at the reported arena and in the
    Python TFLM interpreter; compare bit for bit."""
    from converters.runtimes import tflm, tflm_cpp
    xs = [np.asarray(x)[:MAX_CHECK_SAMPLES] for x in inputs]
    big = max(arena.bytes_64, arena.python_minimum or 0) * 2
    expected = tflm.run(tflite, xs, arena_size=big)
    check = {}
    for arch, size in (("m32", arena.bytes), ("64", arena.bytes_64)):
        if arch == "m32" and arena.source != CPP:
            continue
        got = tflm_cpp.run(tflite, xs, arena_size=size, arch=arch)
        check[arch] = {"arena": int(size), "samples": int(xs[0].shape[0]),
                       **_compare(got, expected)}
    return check


def _compare(got, expected) -> dict:
    """Integer outputs must be bit-identical; float outputs (a float32
    model) may differ in the last bits between builds (``-m32`` computes
    with the x87 unit), so they agree within 1e-5 of the output's scale."""
    identical = all(np.array_equal(a, b) for a, b in zip(got, expected))
    diff, agrees = 0.0, True
    for a, b in zip(got, expected):
        if not a.size:
            continue
        if np.issubdtype(b.dtype, np.floating):
            d = float(np.max(np.abs(a.astype(np.float64) - b)))
            scale = float(np.max(np.abs(b))) or 1.0
            agrees &= bool(np.isfinite(d) and d <= 1e-5 * scale)
        else:
            d = float(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))
            agrees &= d == 0
        diff = max(diff, d)
    return {"identical": identical, "agrees": agrees,
            "max_abs_diff": int(diff) if diff == int(diff) else diff}


def measure_arena(tflite: bytes, *, python_minimum: int | None = None,
            log: Callable[[str], None] | None = say) -> ArenaFigures:
    """Measure the arena in the C++ build, or fall back (labelled).

    Args:
        tflite: the exact model that ships.
        python_minimum: the Python runtime's bisected minimum for it, the
            last fallback (required when no C++ build is possible).
        log: progress lines (a library build takes minutes the first time).

    Raises:
        MicroError: no C++ build is possible and no ``python_minimum`` given,
            or the model does not run in the C++ build.
    """
    from converters.runtimes import tflm_cpp
    from converters.runtimes.tflm_arena import arena_margin
    from converters.targets.micro import MicroError

    def plus_margin(n: int) -> int:
        return n + arena_margin(n)

    minima, reasons, commit = {}, {}, None
    for arch in ("64", "m32"):
        try:
            minima[arch], commit = tflm_cpp.find_arena(tflite, arch=arch,
                                                       log=log)
        except tflm_cpp.CppUnavailable as exc:
            reasons[arch] = str(exc)
    common = dict(minimum_32=minima.get("m32"), minimum_64=minima.get("64"),
                  python_minimum=python_minimum, tflm_commit=commit)
    if "m32" in minima and "64" in minima:
        return ArenaFigures(
            bytes=plus_margin(minima["m32"]), bytes_64=plus_margin(minima["64"]),
            source=CPP, note=("plain MicroInterpreter in a TFLM C++ build "
                              "(-m32 and 64-bit host), minimum + 5% margin"),
            **common)
    if "64" in minima:
        size = plus_margin(minima["64"])
        return ArenaFigures(
            bytes=size, bytes_64=size, source="tflm-c++-64",
            note=(f"64-bit host figure of a TFLM C++ build, used for 32-bit "
                  f"targets too (an upper bound: they need less); no 32-bit "
                  f"build: {reasons.get('m32')}"), **common)
    if python_minimum is None:
        raise MicroError(f"cannot measure the arena: no TFLM C++ build "
                         f"({reasons.get('64')}) and no Python figure given")
    size = plus_margin(int(python_minimum))
    return ArenaFigures(
        bytes=size, bytes_64=size, source=PYTHON,
        note=(f"the Python tflite_micro runtime's minimum on a 64-bit host "
              f"with its RecordingMicroAllocator: an upper bound for a plain "
              f"MicroInterpreter, which typically needs ~300 B less on 64-bit "
              f"hosts and 25-40% less on 32-bit targets; not measured in a "
              f"TFLM C++ build: {reasons.get('64')}"), **common)


def ship(tflite: bytes, *, encoding: str = "none", file: str = "model.tflite",
         python_minimum: int | None = None,
         inputs: Sequence[np.ndarray] | None = None,
         log: Callable[[str], None] | None = say) -> Shipped:
    """Measure and check the model that ships.

    Args:
        tflite: the exact bytes the C array will hold.
        encoding: ``"none"``, or the methods used, e.g. ``"huffman+lut"``.
        file: the ``.tflite`` file it is saved as beside the C source.
        python_minimum: the Python TFLM runtime's bisected arena minimum for
            these bytes (fallback when no C++ build is possible).
        inputs: validation inputs (one ``[N, ...]`` array per model input,
            already in the input dtypes) to compare the C++ build's outputs
            with the Python interpreter's; None skips the comparison.
        log: progress lines.

    Raises:
        MicroError: the model does not run in the C++ build, or no arena
            figure can be had at all.
    """
    from converters.runtimes import tflm_cpp
    tflite = bytes(tflite)
    arena = measure_arena(tflite, python_minimum=python_minimum, log=log)
    cpp_check: dict = {}
    if inputs is not None and arena.source.startswith("tflm-c++"):
        try:
            cpp_check = _check_outputs(tflite, inputs, arena)
        except tflm_cpp.CppUnavailable as exc:
            cpp_check = {"skipped": str(exc)}
    elif inputs is not None:
        cpp_check = {"skipped": "no TFLM C++ build here"}
    return Shipped(tflite=tflite, encoding=encoding, file=file, arena=arena,
                   cpp_check=cpp_check)


def report_lines(micro: dict | None) -> list[str]:
    """Markdown lines for ``report["micro"]`` (:meth:`Shipped.to_report`)."""
    if not micro:
        return []
    a = micro["arena"]

    def n(v):
        return f"{v:,}" if isinstance(v, int) else "-"
    lines = ["", "## Microcontroller C source", "",
             f"Ships `{micro['file']}` ({label(micro['encoding'])}): "
             f"the C array is exactly its {n(micro['array_bytes'])} B.", "",
             "| arena | minimum B | kTensorArenaSize B |", "|---|---|---|"]
    if a["source"] == CPP:
        lines += [f"| 32-bit (TFLM C++ `-m32`) | {n(a['minimum_32'])} | "
                  f"**{n(a['bytes'])}** |",
                  f"| 64-bit host (TFLM C++) | {n(a['minimum_64'])} | "
                  f"{n(a['bytes_64'])} |"]
    else:
        lines.append(f"| {a['source']} | "
                     f"{n(a['minimum_64'] or a['python_minimum'])} | "
                     f"**{n(a['bytes'])}** |")
    if a.get("python_minimum"):
        lines.append(f"| Python runtime (64-bit, recording allocator) | "
                     f"{n(a['python_minimum'])} | - |")
    lines += ["", f"Margin {n(a['margin'])} B. {a['note']}."]
    checks = {k: v for k, v in micro.get("cpp_check", {}).items()
              if isinstance(v, dict)}
    if checks:
        lines.append("C++ outputs vs Python TFLM interpreter: " + "; ".join(
            f"{arch}: {_word(c)} on "
            f"{c['samples']} samples at a {n(c['arena'])}-B arena"
            for arch, c in checks.items()) + ".")
    elif micro.get("cpp_check", {}).get("skipped"):
        lines.append(f"No C++ output check: {micro['cpp_check']['skipped']}.")
    return lines


def _word(check: dict) -> str:
    if check["identical"]:
        return "identical"
    return "within float rounding" if check.get("agrees") else "DIFFERENT"
