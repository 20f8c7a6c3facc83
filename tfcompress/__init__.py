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

__version__ = "0.1.0"

_EXPORTS = {
    "keras": ("tfcompress._keras", "keras"),
    "prune": ("tfcompress.pruning", "prune"),
    "strip_pruning": ("tfcompress.pruning", "strip_pruning"),
    "cluster": ("tfcompress.clustering", "cluster"),
    "strip_clustering": ("tfcompress.clustering", "strip_clustering"),
    "quantize": ("tfcompress.quantization", "quantize"),
    "binarize": ("tfcompress.lowbit", "binarize"),
    "strip_lowbit": ("tfcompress.lowbit", "strip_lowbit"),
    "strip": ("tfcompress.unwrap", "strip"),
    "scope": ("tfcompress.unwrap", "scope"),
    "custom_objects": ("tfcompress.unwrap", "custom_objects"),
    "callbacks_for": ("tfcompress.callbacks", "callbacks_for"),
    "PruningStep": ("tfcompress.callbacks", "PruningStep"),
    "SparsityLogger": ("tfcompress.callbacks", "SparsityLogger"),
    "ConstantSparsity": ("tfcompress.schedules", "ConstantSparsity"),
    "PolynomialSparsity": ("tfcompress.schedules", "PolynomialSparsity"),
    "kernel_stats": ("tfcompress.stats", "kernel_stats"),
    "CompressionReport": ("tfcompress.selection", "CompressionReport"),
    "Recipe": ("tfcompress.recipe", "Recipe"),
    "compress": ("tfcompress.stages", "compress"),
    "flatten": ("tfcompress.nesting", "flatten"),
    "prune_channels": ("tfcompress.channel_pruning", "prune_channels"),
    "factorize": ("tfcompress.lowrank", "factorize"),
    "Distiller": ("tfcompress.distill", "Distiller"),
    "analyze_sensitivity": ("tfcompress.sensitivity", "analyze"),
    "choose_budget": ("tfcompress.sensitivity", "choose"),
    "load_keras3": ("tfcompress.keras3", "load"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")


def __dir__():
    return __all__
