"""Which Keras a model is built with, and the public API routed on it.

``tfcompress.prune`` & co. accept a Keras 3 model (``import keras``) and
return a Keras 3 model (:mod:`tfcompress.keras3`), and a tf_keras model
keeps the tfmot path (:mod:`tfcompress.keras2`). Nothing here imports
either Keras before a model says which one it is.
"""

from __future__ import annotations

import importlib

from converters.loading.generation import is_keras3


def _route(name: str, keras2: str, keras3: str, doc: str):
    def routed(model, *args, **kwargs):
        module, attr = (keras3 if is_keras3(model) else keras2).split(":")
        return getattr(importlib.import_module(module), attr)(
            model, *args, **kwargs)
    routed.__name__ = routed.__qualname__ = name
    routed.__doc__ = doc
    return routed


prune = _route(
    "prune", "tfcompress.keras2.pruning:prune",
    "tfcompress.keras3.pruning:prune",
    """Wrap a model for magnitude pruning (Keras 3 or tf_keras).

    See :func:`tfcompress.keras3.pruning.prune` and
    :func:`tfcompress.keras2.pruning.prune` for the arguments.

    Example:
        >>> model = tfcompress.prune(model, target_sparsity=0.75)
    """)
cluster = _route(
    "cluster", "tfcompress.keras2.clustering:cluster",
    "tfcompress.keras3.clustering:cluster",
    """Wrap a trained model for weight clustering (Keras 3 or tf_keras).

    Example:
        >>> model = tfcompress.cluster(model, 16, preserve_sparsity=True)
    """)
quantize = _route(
    "quantize", "tfcompress.keras2.quantization:quantize",
    "tfcompress.keras3.quantization:quantize",
    """Wrap a model for int8 QAT, PQAT, CQAT or PCQAT (auto-detected).

    Example:
        >>> qat = tfcompress.quantize(tfcompress.strip(model))
    """)
strip = _route(
    "strip", "tfcompress.keras2.unwrap:strip", "tfcompress.keras3.strip:strip",
    """Remove the training wrappers, keeping their effect.

    Example:
        >>> deployable = tfcompress.strip(model)
    """)
strip_pruning = _route(
    "strip_pruning", "tfcompress.keras2.pruning:strip_pruning",
    "tfcompress.keras3.strip:strip",
    """Remove pruning wrappers; kernels keep their zeros.""")
strip_clustering = _route(
    "strip_clustering", "tfcompress.keras2.clustering:strip_clustering",
    "tfcompress.keras3.strip:strip",
    """Remove clustering wrappers; kernels keep their clustered values.""")
callbacks_for = _route(
    "callbacks_for", "tfcompress.keras2.callbacks:callbacks_for",
    "tfcompress.keras3.callbacks:callbacks_for",
    """The callbacks ``model.fit`` needs for ``model``'s wrappers.

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=tfcompress.callbacks_for(model))
    """)
compress = _route(
    "compress", "tfcompress.pipeline.stages:compress",
    "tfcompress.keras3.stages:compress",
    """Run every stage of a recipe on a model (Keras 3 or tf_keras).

    Example:
        >>> result = tfcompress.compress(model, (x, y), None, "pcqat")
    """)
