"""The public API is listed once in each package's ``__init__``; importing
every submodule must not shadow an exported function with a module."""

import importlib
import pkgutil
import types

import pytest

import converters
import tfcompress


@pytest.mark.parametrize("package", [tfcompress, converters])
def test_exports_stay_functions_after_importing_all_submodules(package):
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_micro_worker"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    for name in package.__all__:
        if name in ("__version__", "keras"):
            continue
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), name
