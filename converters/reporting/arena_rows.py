"""The arena row every report leads its micro summary with.

Example:
    >>> shipped_arena_rows(report)
    [('arena of the shipped model, in model_data.h (TFLM C++ build, 32-bit)', 21584)]
"""

from __future__ import annotations

__all__ = ["shipped_arena_rows"]


def shipped_arena_rows(report: dict) -> list:
    """The arena the C header carries (the shipped model, measured in a TFLM
    C++ build where one exists): what the firmware allocates."""
    arena = (report.get("micro") or {}).get("arena") or {}
    if not arena.get("bytes"):
        return []
    source = {"tflm-c++": "TFLM C++ build, 32-bit",
              "python-tflm": "Python TFLM runtime, upper bound"}.get(
                  arena.get("source"), arena.get("source"))
    return [(f"arena of the shipped model, in model_data.h ({source})",
             arena["bytes"])]
