"""The conversion stage: Keras model -> validated .tflite for a target.

Example:
    >>> from converters import convert
    >>> art = convert(model, representative_data=x[:200], target="micro")
    >>> art.validate(x_test, y_test)
    >>> art.save("build/digits")
"""

import importlib

_EXPORTS = {
    "convert": ("converters.artifact", "convert"),
    "Artifact": ("converters.artifact", "Artifact"),
    "convert_bytes": ("converters.conversion", "convert_bytes"),
    "load_model": ("converters.conversion", "load_model"),
    "MODES": ("converters.conversion", "MODES"),
    "TARGETS": ("converters.conversion", "TARGETS"),
    "ConversionError": ("converters.errors", "ConversionError"),
    "ValidationError": ("converters.errors", "ValidationError"),
    "read": ("converters.flatbuffer", "read"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'converters' has no attribute {name!r}")
