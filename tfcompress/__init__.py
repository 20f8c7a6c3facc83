"""tfcompress: compress Keras models for Android and microcontrollers.

Wrap a model, train it with ``model.fit`` and the callbacks it needs, strip
it, and convert it with :mod:`converters`::

    import tfcompress as tfc
    from tfcompress import keras

    model = tfc.prune(model, target_sparsity=0.75, schedule="polynomial")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=8, callbacks=tfc.callbacks_for(model))
    deployable = tfc.strip(model)

Attributes are imported lazily so that ``tfcompress --help`` does not import
TensorFlow.
"""

import importlib

from converters.loading.models import register_scope
from tfcompress import _moved  # noqa: F401  (old import paths)

__version__ = "0.1.0"

_EXPORTS = {
    "keras": ("tfcompress.keras2.env", "keras"),
    "prune": ("tfcompress.generation", "prune"),
    "strip_pruning": ("tfcompress.generation", "strip_pruning"),
    "cluster": ("tfcompress.generation", "cluster"),
    "strip_clustering": ("tfcompress.generation", "strip_clustering"),
    "quantize": ("tfcompress.generation", "quantize"),
    "binarize": ("tfcompress.keras2.lowbit", "binarize"),
    "strip_lowbit": ("tfcompress.keras2.lowbit", "strip_lowbit"),
    "strip": ("tfcompress.generation", "strip"),
    "scope": ("tfcompress.keras2.unwrap", "scope"),
    "custom_objects": ("tfcompress.keras2.unwrap", "custom_objects"),
    "callbacks_for": ("tfcompress.generation", "callbacks_for"),
    "PruningStep": ("tfcompress.keras2.callbacks", "PruningStep"),
    "SparsityLogger": ("tfcompress.keras2.callbacks", "SparsityLogger"),
    "ConstantSparsity": ("tfcompress.keras2.schedules", "ConstantSparsity"),
    "PolynomialSparsity": ("tfcompress.keras2.schedules", "PolynomialSparsity"),
    "kernel_stats": ("tfcompress.analysis.stats", "kernel_stats"),
    "CompressionReport": ("tfcompress.keras2.selection", "CompressionReport"),
    "Recipe": ("tfcompress.pipeline.recipe", "Recipe"),
    "compress": ("tfcompress.generation", "compress"),
    "flatten": ("tfcompress.keras2.nesting", "flatten"),
    "prune_channels": ("tfcompress.keras2.channel_pruning", "prune_channels"),
    "factorize": ("tfcompress.keras2.lowrank", "factorize"),
    "Distiller": ("tfcompress.keras2.distill", "Distiller"),
    "analyze_sensitivity": ("tfcompress.analysis.sensitivity", "analyze"),
    "choose_budget": ("tfcompress.analysis.sensitivity", "choose"),
    "load_keras3": ("converters.loading.keras3_files", "load"),
    "is_keras3": ("tfcompress.generation", "is_keras3"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def _keras2_load_scope():
    from tfcompress.keras2.unwrap import scope
    return scope()


register_scope(_keras2_load_scope)   # saved wrapped models load anywhere


def __getattr__(name):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")


def __dir__():
    return __all__
