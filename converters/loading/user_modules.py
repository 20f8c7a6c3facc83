"""Import the user's own modules before a model is loaded (``--import``).

A model with custom layers loads when the module that defines them has
been imported: Keras 3 layers registered with
``keras.saving.register_keras_serializable`` (and tf_keras ones registered
with ``tf_keras.saving.register_keras_serializable``) become known by
importing the module. A module may also expose a ``CUSTOM_OBJECTS`` dict
(``{name: class}``) for layers it does not register; those are passed to
``load_model``.

Example:
    >>> import_modules(["my_layers", "src/blocks.py"])
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Dict, Iterable, List

__all__ = ["import_modules", "imported_custom_objects"]

_IMPORTED: List[ModuleType] = []


def _from_file(path: str) -> ModuleType:
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python file: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_modules(names: Iterable[str]) -> List[ModuleType]:
    """Import each module name (``pkg.layers``) or ``.py`` path, with the
    current directory on ``sys.path``.

    Raises:
        ValueError: one line naming the module and why it did not import.
    """
    modules = []
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            if name.endswith(".py") or os.sep in name:
                if not os.path.isfile(name):
                    raise ImportError(f"no such file {name!r}")
                module = _from_file(name)
            else:
                module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the user's code
            first = (str(exc).splitlines() or [""])[0]
            raise ValueError(
                f"--import {name}: cannot import the module "
                f"({type(exc).__name__}: {first}); pass an importable module "
                "name (run from its folder) or a path to a .py file") from None
        modules.append(module)
        _trust(module)
        if module not in _IMPORTED:
            _IMPORTED.append(module)
    return modules


def _trust(module: ModuleType) -> None:
    """The user imported it: configs may name its classes (and those of
    its ``CUSTOM_OBJECTS``) without the code scan refusing them."""
    from converters.loading import codescan
    codescan.trust_module(module.__name__)
    for obj in (getattr(module, "CUSTOM_OBJECTS", None) or {}).values():
        owner = getattr(obj, "__module__", None)
        if isinstance(owner, str):
            codescan.trust_module(owner)


def imported_custom_objects() -> Dict[str, object]:
    """``CUSTOM_OBJECTS`` of every imported module, merged."""
    merged: Dict[str, object] = {}
    for module in _IMPORTED:
        objects = getattr(module, "CUSTOM_OBJECTS", None)
        if isinstance(objects, dict):
            merged.update(objects)
    return merged
