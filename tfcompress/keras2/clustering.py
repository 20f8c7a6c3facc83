"""Weight clustering: ``cluster`` wraps a model, ``strip_clustering`` unwraps.

Each wrapped kernel is constrained to ``clusters`` unique values (per output
channel with ``per_channel=True``), which int8 conversion keeps and
TFLM's LUT compression turns into 4-bit indices. Built on tfmot.
"""

from __future__ import annotations

from typing import Iterable, Optional

from tfcompress.keras2 import selection
from tfcompress.keras2.env import keras, tfmot

from tensorflow_model_optimization.python.core.clustering.keras import (
    cluster_wrapper, clustering_registry)

_cl = tfmot.clustering.keras
CentroidInit = _cl.CentroidInitialization

INITS = {
    "kmeans++": CentroidInit.KMEANS_PLUS_PLUS,
    "linear": CentroidInit.LINEAR,
    "density": CentroidInit.DENSITY_BASED,
    "random": CentroidInit.RANDOM,
}


def get_init(identifier):
    """Centroid initialization from a name or a tfmot enum value."""
    if isinstance(identifier, CentroidInit):
        return identifier
    if identifier in INITS:
        return INITS[identifier]
    raise ValueError(f"Unknown centroid init {identifier!r}; valid names: "
                     f"{sorted(INITS)}.")


def _clusterable_size(layer, per_channel: bool) -> int:
    sizes = []
    for _, w in clustering_registry.ClusteringRegistry.make_clusterable(
            layer).get_clusterable_weights():
        n = int(w.shape.num_elements())
        if per_channel and len(w.shape) > 1:
            n //= int(w.shape[-1])
        sizes.append(n)
    return min(sizes) if sizes else 0


def _skip_reason(layer, clusters: int, per_channel: bool, skip):
    if selection.matches(layer, skip):
        return selection.SKIP_USER
    if not layer.weights:
        return selection.SKIP_NO_WEIGHTS
    if isinstance(layer, keras.Model):
        return "nested model: cluster its layers by passing it to cluster()"
    if not clustering_registry.ClusteringRegistry.supports(layer):
        return selection.SKIP_NO_SUPPORT
    size = _clusterable_size(layer, per_channel)
    if size == 0:
        return "no clusterable weights"
    if size <= clusters:
        return selection.SKIP_TOO_SMALL
    return None


def cluster(model, clusters: int = 16, init="kmeans++", *,
            preserve_sparsity: bool = False, per_channel: bool = False,
            skip: Optional[Iterable] = None,
            report: Optional[selection.CompressionReport] = None,
            per_layer: Optional[dict] = None):
    """Wrap every clusterable layer of ``model`` for weight clustering.

    Args:
        model: a Sequential or Functional ``tfcompress.keras`` model with
            trained weights (the centroids are initialized from them).
        clusters: unique values per kernel (per channel if ``per_channel``).
        init: ``"kmeans++"``, ``"linear"``, ``"density"`` or ``"random"``.
        preserve_sparsity: keep zeros at zero (sparsity-preserving clustering,
            use after pruning).
        per_channel: cluster each output channel of Conv2D separately.
        skip: layers to leave alone: names, classes, class names, ``"re:.."``.
        report: a :class:`CompressionReport` to append to.
        per_layer: ``{layer name: clusters}`` overriding ``clusters`` for
            those layers (mixed precision: 16 clusters = 4-bit LUT indices,
            4 = 2-bit, 2 = binary).

    Example:
        >>> clustered = cluster(model, 16, "kmeans++", preserve_sparsity=True)
    """
    if not isinstance(clusters, int) or clusters < 2:
        raise ValueError(f"cluster: clusters should be an int >= 2. "
                         f"Got: {clusters!r}")
    centroid_init = get_init(init)
    counts = dict(per_layer or {})
    bad = {n: k for n, k in counts.items()
           if not isinstance(k, int) or isinstance(k, bool) or k < 2}
    if bad:
        name, k = next(iter(bad.items()))
        raise ValueError(f"cluster: per_layer[{name!r}] should be an int >= "
                         f"2. Got: {k!r}")

    def decide(layer):
        k = counts.get(layer.name, clusters)
        reason = _skip_reason(layer, k, per_channel, skip)
        if reason is not None:
            return layer, reason
        channel = per_channel and isinstance(layer, keras.layers.Conv2D)
        return cluster_wrapper.ClusterWeights(
            layer, k, centroid_init, preserve_sparsity, channel), None

    new_model, report = selection.apply_to_layers(model, decide, "cluster",
                                                  report)
    new_model.compression_report = report
    if not report.compressed:
        raise ValueError(f"cluster: no layer of model {model.name!r} can be "
                         f"clustered (skipped: {report.skipped}).")
    return new_model


def is_clustered(model) -> bool:
    return any(isinstance(l, cluster_wrapper.ClusterWeights)
               for l in model.layers)


def strip_clustering(model):
    """Remove clustering wrappers; kernels keep their clustered values."""
    return _cl.strip_clustering(model)


def custom_objects() -> dict:
    return {"ClusterWeights": cluster_wrapper.ClusterWeights}
