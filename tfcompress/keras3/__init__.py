"""Pruning, clustering and QAT for Keras 3 models (``import keras``).

Built on the Keras 3 public API only (``keras.layers.Wrapper``,
``keras.ops``, ``keras.callbacks.Callback``, ``keras.saving``), so the
wrapped models train under the TensorFlow and the JAX backends. The public
``tfcompress.prune`` & co. route Keras 3 models here (see
:mod:`tfcompress.generation`).

Modules: :mod:`~tfcompress.keras3.base` (wrapper base, model rewrite),
:mod:`~tfcompress.keras3.pruning`, :mod:`~tfcompress.keras3.clustering`,
:mod:`~tfcompress.keras3.quantization` (QAT) with
:mod:`~tfcompress.keras3.quantizers`, :mod:`~tfcompress.keras3.schedules`,
:mod:`~tfcompress.keras3.callbacks` (``fit`` callbacks and custom-loop
hooks), :mod:`~tfcompress.keras3.strip`, :mod:`~tfcompress.keras3.stages`
(recipes), :mod:`~tfcompress.keras3.selection` (which layers a technique
takes) and :mod:`~tfcompress.keras3.report` (compressed / skipped layers
with reasons).
"""

import importlib

_EXPORTS = {
    "prune": "pruning", "PruneWrapper": "pruning",
    "cluster": "clustering", "ClusterWrapper": "clustering",
    "quantize": "quantization", "QuantizeWrapper": "quantizers",
    "strip": "strip", "callbacks_for": "callbacks",
    "PruningStep": "callbacks", "SparsityLogger": "callbacks",
    "ConstantSparsity": "schedules", "PolynomialSparsity": "schedules",
    "CompressionReport": "report", "compress": "stages",
}
#: the Keras 3 file translator that lived at this name before
_LEGACY = ("load", "is_keras3_file", "Keras3Error")

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f"tfcompress.keras3.{_EXPORTS[name]}")
        return getattr(module, name)
    if name in _LEGACY:
        import warnings
        warnings.warn(f"tfcompress.keras3.{name} moved to "
                      f"converters.loading.keras3_files.{name}",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module("converters.loading.keras3_files")
        return getattr(module, name)
    raise AttributeError(f"module 'tfcompress.keras3' has no attribute "
                         f"{name!r}")


def custom_objects() -> dict:
    """Every class a saved Keras 3 training model may contain (they are
    also registered with ``keras.saving``: importing the modules is
    enough to load)."""
    return {"PruneWrapper": pruning.PruneWrapper,
            "ClusterWrapper": clustering.ClusterWrapper,
            "QuantizeWrapper": quantizers.QuantizeWrapper,
            "FoldedBatchNorm": quantization.FoldedBatchNorm,
            "ConstantSparsity": schedules.ConstantSparsity,
            "PolynomialSparsity": schedules.PolynomialSparsity}


# register the wrappers and schedules with keras.saving, so a saved
# training model loads with plain keras.models.load_model
from tfcompress.keras3 import (clustering, pruning, quantization,  # noqa: E402,F401
                               quantizers, schedules)
