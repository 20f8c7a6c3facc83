"""Tensor-arena figures for a plain ``tflite::MicroInterpreter``.

TFLM's arena is the RAM a model needs besides the firmware. The figure a
firmware needs is that of a plain ``MicroInterpreter`` on a 32-bit target;
:func:`converters.targets.micro_ship.measure_arena` gets it from a real TFLM
C++ build
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
    >>> figures = micro_ship.measure_arena(tflite, python_minimum=2192)
    >>> figures.bytes, figures.source
    (1424, 'tflm-c++')
"""

from __future__ import annotations

import dataclasses

__all__ = ["CPP", "PYTHON", "ArenaFigures", "from_bytes"]

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
