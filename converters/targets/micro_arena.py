"""Tensor-arena figures for a plain ``tflite::MicroInterpreter``.

TFLM's arena is the RAM a model needs besides the firmware. The figure a
firmware needs is that of a plain ``MicroInterpreter`` on a 32-bit target;
:func:`measure` gets it from a real TFLM C++ build
(:mod:`converters.runtimes.tflm_cpp`): the smallest arena at 16-byte steps
with which the model allocates and runs, built with ``-m32`` (4-byte
pointers, as on a Cortex-M) and for the 64-bit host, plus a margin (5%,
rounded down to 16 B; :func:`converters.runtimes.tflm.arena_margin`).

Where no C++ build is possible (no TFLM sources, no compiler, an op the
host library lacks) the figures fall back, labelled as such, to the next
best measurement: the 64-bit C++ figure when only ``-m32`` is missing, else
the Python ``tflite_micro`` runtime's bisected minimum. Both are upper
bounds for a 32-bit target (the Python runtime's ``RecordingMicroAllocator``
keeps its bookkeeping in the arena), never an estimate below the truth.

Example:
    >>> figures = measure(tflite, python_minimum=2192)
    >>> figures.bytes, figures.source
    (1424, 'tflm-c++')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from converters.runtimes.tflm_build import say

__all__ = ["ArenaFigures", "from_bytes", "measure"]

CPP = "tflm-c++"
PYTHON = "python-tflm"


@dataclasses.dataclass(frozen=True)
class ArenaFigures:
    """What ``kTensorArenaSize`` is and how it was obtained.

    ``bytes`` is the figure for a 32-bit target (``kTensorArenaSize`` when
    compiled with 4-byte pointers, and what the RAM budget checks);
    ``bytes_64`` the one for a 64-bit host. ``minimum_32``/``minimum_64`` are
    the measured minima (None where not measured), ``python_minimum`` the
    Python runtime's bisected minimum (64-bit host, recording allocator).
    ``source`` is ``"tflm-c++"`` when ``bytes`` comes from a ``-m32`` C++
    build, else the fallback it comes from; ``note`` says so in one line.
    """

    bytes: int
    bytes_64: int
    minimum_32: int | None = None
    minimum_64: int | None = None
    python_minimum: int | None = None
    source: str = CPP
    note: str = ""
    tflm_commit: str | None = None

    @property
    def margin(self) -> int:
        base = self.minimum_32 if self.source == CPP else (
            self.minimum_64 or self.python_minimum)
        return self.bytes - base if base else 0

    @property
    def measured_32(self) -> bool:
        return self.source == CPP

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["margin"] = self.margin
        return d


def from_bytes(arena_bytes: int, note: str = "given by the caller") -> ArenaFigures:
    """Figures for a fixed arena size (no measurement): both sizes equal."""
    if int(arena_bytes) <= 0:
        raise ValueError(f"arena_bytes must be a positive byte count. "
                         f"Got: {arena_bytes}")
    return ArenaFigures(bytes=int(arena_bytes), bytes_64=int(arena_bytes),
                        source="given", note=note)


def measure(tflite: bytes, *, python_minimum: int | None = None,
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
