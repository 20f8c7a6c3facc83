"""``strip``: from a training model back to a deployable Keras model, and
the one scope that loads saved wrapped models."""

from __future__ import annotations

import contextlib

from tfcompress.keras2 import clustering
from tfcompress.keras2 import lowbit
from tfcompress.keras2 import pruning
from tfcompress.keras2 import quantization
from tfcompress.keras2.env import keras, tfmot


def strip(model):
    """Remove pruning and clustering wrappers, keeping their effect.

    Kernels keep their zeros and clustered values. Quantization wrappers stay:
    they carry the ranges the converter needs (tfmot's QAT flow converts the
    QAT model itself).

    Example:
        >>> deployable = strip(model)
    """
    if pruning.is_pruned(model):
        model = pruning.strip_pruning(model)
    if clustering.is_clustered(model):
        model = clustering.strip_clustering(model)
    if lowbit.is_lowbit(model):
        model = lowbit.strip_lowbit(model)
    return model


def custom_objects() -> dict:
    """The toolkit's own classes a saved wrapped model may contain."""
    return {**pruning.custom_objects(), **clustering.custom_objects(),
            **lowbit.custom_objects()}


@contextlib.contextmanager
def scope():
    """Load saved wrapped models (pruned, clustered, QAT) inside this scope.

    Example:
        >>> with tfcompress.scope():
        ...     model = keras.models.load_model("mid_training.keras")
    """
    with quantization.quantize_scope(), \
            tfmot.sparsity.keras.prune_scope(), \
            tfmot.clustering.keras.cluster_scope(), \
            keras.utils.custom_object_scope(custom_objects()):
        yield
