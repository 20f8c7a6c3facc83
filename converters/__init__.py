"""The conversion stage: Keras model -> validated .tflite for a target.

Example:
    >>> from converters import convert
    >>> art = convert(model, representative_data=x[:200], target="micro")
    >>> art.validate(x_test, y_test)
    >>> art.save("build/digits")
"""

import importlib

from converters import _moved  # noqa: F401  (old import paths)
from converters.loading import quiet as _quiet

_quiet.install()   # TensorFlow's start-up log lines stay off the terminal

_EXPORTS = {
    "convert": ("converters.conversion.artifact", "convert"),
    "Artifact": ("converters.conversion.artifact", "Artifact"),
    "convert_bytes": ("converters.conversion.modes", "convert_bytes"),
    "load_model": ("converters.loading.models", "load_model"),
    "MODES": ("converters.conversion.modes", "MODES"),
    "TARGETS": ("converters.conversion.modes", "TARGETS"),
    "ConversionError": ("converters.errors", "ConversionError"),
    "ValidationError": ("converters.errors", "ValidationError"),
    "read": ("converters.tflite.flatbuffer", "read"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'converters' has no attribute {name!r}")
