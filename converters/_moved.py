"""Old import paths keep working for one release, with a DeprecationWarning.

The 0.1 modules moved into subpackages (e.g. ``converters.micro`` is now
:mod:`converters.targets.micro` and :mod:`converters.runtimes.tflm`).
:func:`install` registers a finder that answers an old module name with a
module exposing the names of its new home(s).

Example:
    >>> import converters.flatbuffer   # DeprecationWarning, then works
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Dict, Sequence

__all__ = ["install", "MOVED"]

#: old module -> new module(s), first one wins for a name in several
MOVED: Dict[str, Sequence[str]] = {
    "converters.conversion": ("converters.conversion.modes",
                              "converters.loading.models"),
    "converters.artifact": ("converters.conversion.artifact",),
    "converters.sandbox": ("converters.runtimes.sandbox",),
    "converters.litert": ("converters.runtimes.litert",),
    "converters.latency": ("converters.runtimes.latency",),
    "converters.validate": ("converters.runtimes.metrics",),
    "converters._micro_worker": ("converters.runtimes.tflm_worker",),
    "converters.micro": ("converters.targets.micro", "converters.runtimes.tflm"),
    "converters.micro_emit": ("converters.targets.micro_emit",),
    "converters.budgets": ("converters.targets.budgets",),
    "converters.android": ("converters.targets.android",),
    "converters.gpu": ("converters.targets.gpu",),
    "converters.lut": ("converters.encodings.lut",),
    "converters.flatbuffer": ("converters.tflite.flatbuffer",),
    "converters.verify": ("converters.tflite.verify",),
    "converters.inspect": ("converters.tflite.inspect",),
}


class _Alias(types.ModuleType):
    """A module whose attributes are looked up in its new home(s)."""

    def __init__(self, name: str, targets: Sequence[str]):
        super().__init__(name)
        self.__targets = tuple(targets)
        self.__doc__ = f"Moved to {', '.join(targets)}."

    def __getattr__(self, attr):
        for target in self.__targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (moved to "
                             f"{', '.join(self.__targets)}) has no "
                             f"attribute {attr!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, table: Dict[str, Sequence[str]]):
        self.table = table

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.table:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        targets = self.table[spec.name]
        warnings.warn(f"{spec.name} moved to {' and '.join(targets)}; the "
                      "old path will be removed in the next release",
                      DeprecationWarning, stacklevel=3)
        return _Alias(spec.name, targets)

    def exec_module(self, module):
        pass


def install(table: Dict[str, Sequence[str]]) -> None:
    """Answer the old module names of ``table`` (once per table)."""
    if not any(isinstance(f, _Finder) and f.table is table
               for f in sys.meta_path):
        sys.meta_path.append(_Finder(table))


install(MOVED)
