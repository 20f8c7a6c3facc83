"""The model a micro artifact ships, and everything derived from it.

A micro artifact ships exactly one ``.tflite``: the plain int8 model, or a
variant whose constant tensors are stored encoded (LUT, PRUNE, HUFFMAN: what
the flash/RAM plan of :mod:`converters.encodings.planner` chooses).
:func:`ship` takes those bytes and derives the rest from them alone: the
arena (:mod:`converters.targets.micro_arena`), a check that the TFLM C++
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
from converters.targets.micro_arena import CPP, ArenaFigures

__all__ = ["MAX_CHECK_SAMPLES", "Shipped", "label", "report_lines", "ship"]

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
        return all(c.get("identical", True) for c in self.cpp_check.values()
                   if isinstance(c, dict))

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
        check[arch] = {
            "arena": int(size), "samples": int(xs[0].shape[0]),
            "identical": all(np.array_equal(a, b) for a, b in
                             zip(got, expected)),
            "max_abs_diff": int(max(np.max(np.abs(
                a.astype(np.int64) - b.astype(np.int64))) if a.size else 0
                for a, b in zip(got, expected)))}
    return check


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
    from converters.targets import micro_arena
    tflite = bytes(tflite)
    arena = micro_arena.measure(tflite, python_minimum=python_minimum,
                                log=log)
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
            f"{arch}: {'identical' if c['identical'] else 'DIFFERENT'} on "
            f"{c['samples']} samples at a {n(c['arena'])}-B arena"
            for arch, c in checks.items()) + ".")
    elif micro.get("cpp_check", {}).get("skipped"):
        lines.append(f"No C++ output check: {micro['cpp_check']['skipped']}.")
    return lines
