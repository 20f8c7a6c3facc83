"""Weight clustering: ``cluster`` wraps a model, ``strip_clustering`` unwraps.

Each wrapped kernel is constrained to ``clusters`` unique values (per output
channel with ``per_channel=True``), which int8 conversion keeps and
TFLM's LUT compression turns into 4-bit indices. Built on tfmot.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from tfcompress.keras2 import selection
from tfcompress.keras2.call_args import PositionalInputs
from tfcompress.keras2.nesting import build_by_calling
from tfcompress.keras2.env import keras, tf, tfmot

from tensorflow_model_optimization.python.core.clustering.keras import (
    cluster_wrapper, clustering_algorithm, clustering_registry)

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


def nearest_centroid(values, centroids):
    """``argmin |value - centroid|`` per row (the first of equal centroids)
    for ``values`` ``(rows, n)`` and ``centroids`` ``(rows, k)``, by a
    binary search between the midpoints of the sorted centroids instead of
    tfmot's ``(..., k)`` distance tensor and ``argmin``."""
    ordered = tf.sort(centroids, axis=-1)
    bounds = (ordered[:, 1:] + ordered[:, :-1]) / 2
    position = tf.searchsorted(bounds, values, side="left",
                               out_type=tf.int32)
    same = tf.equal(ordered[:, :, None], centroids[:, None, :])
    first = tf.argmax(tf.cast(same, tf.int32), axis=-1, output_type=tf.int32)
    return tf.cast(tf.gather(first, position, batch_dims=1), tf.int64)


def lookup(centroids, weight, indices, channel_axis: Optional[int] = None):
    """``centroids[indices]`` with tfmot's gradients, as plain dense tensors.

    The forward value is the clustered kernel (per channel along
    ``channel_axis`` when ``centroids`` is ``(channels, k)``). The gradient
    is tfmot's: the kernel's gradient passes straight through to ``weight``
    and each centroid gets the sum of its weights' gradients. tfmot gathers
    from the centroid variable, so the optimizer gets sparse slices (one per
    weight) that it deduplicates with ``Unique`` on every step; here the
    same sum comes as one dense ``(k,)`` tensor.
    """
    k = int(centroids.shape[-1])
    flat = tf.convert_to_tensor(indices)
    if centroids.shape.rank == 2:
        shape = [1] * indices.shape.rank
        shape[channel_axis] = int(centroids.shape[0])
        flat = flat + tf.reshape(
            tf.range(shape[channel_axis], dtype=flat.dtype) * k, shape)
        size = shape[channel_axis] * k
    else:
        size = k

    @tf.custom_gradient
    def _clustered(cents, original):
        del original  # only its gradient: the straight-through estimator
        value = tf.gather(tf.reshape(cents, [-1]), flat)

        def grad(upstream):
            summed = tf.math.unsorted_segment_sum(upstream, flat, size)
            return tf.reshape(summed, tf.shape(cents)), upstream
        return value, grad
    return _clustered(tf.convert_to_tensor(centroids),
                      tf.convert_to_tensor(weight))


class _NearestBySearch:
    """tfmot's pulling indices (weight -> centroid), computed by
    :func:`nearest_centroid` on every training step, and the clustered
    kernel by :func:`lookup` (tfmot's default ``SUM`` gradient
    aggregation; ``AVG`` keeps tfmot's own)."""

    def get_clustered_weight(self, pulling_indices, original_weight):
        if (self.cluster_gradient_aggregation
                != clustering_algorithm.GradientAggregation.SUM):
            return super().get_clustered_weight(pulling_indices,
                                                original_weight)
        per_channel = self.cluster_centroids.shape.rank == 2
        axis = (1 if self.data_format == "channels_first" else 3) \
            if per_channel else None
        return lookup(self.cluster_centroids, original_weight,
                      pulling_indices, axis)

    def get_pulling_indices(self, weight, centroids=None):
        cents = tf.convert_to_tensor(
            self.cluster_centroids if centroids is None else centroids)
        if cents.shape.rank == 1:  # one set of centroids for the kernel
            index = nearest_centroid(tf.reshape(weight, (1, -1)),
                                     cents[None, :])
            return tf.reshape(index, tf.shape(weight))
        axis = 1 if self.data_format == "channels_first" else 3
        perm = [axis] + [i for i in range(4) if i != axis]
        moved = tf.transpose(weight, perm)
        index = nearest_centroid(
            tf.reshape(moved, (cents.shape[0], -1)), cents)
        back = [perm.index(i) for i in range(4)]
        return tf.transpose(tf.reshape(index, tf.shape(moved)), back)


_SEARCHING = {
    base: type(base.__name__, (_NearestBySearch, base), {})
    for base in (clustering_algorithm.ClusteringAlgorithm,
                 clustering_algorithm.ClusteringAlgorithmPerChannel)}


class ClusterWeights(PositionalInputs, cluster_wrapper.ClusterWeights):
    """tfmot's clustering wrapper, the nearest centroid of each weight found
    by a binary search (:func:`nearest_centroid`): the same assignment
    without a ``(weights, clusters)`` distance tensor on every step. Saved
    models keep tfmot's class name. Layers called with several inputs
    (``MultiHeadAttention``) get them all (:class:`PositionalInputs`)."""

    def build(self, input_shape):
        super().build(input_shape)
        for algo in self.clustering_algorithms.values():
            fast = _SEARCHING.get(type(algo))
            if fast is not None:   # layers' own algorithms stay as they are
                algo.__class__ = fast


class ClusterWeightsMHA(ClusterWeights, cluster_wrapper.ClusterWeightsMHA):
    """:class:`ClusterWeights` for ``MultiHeadAttention``: tfmot's MHA
    wrapper reads and strips the projection kernels inside its
    ``EinsumDense`` sublayers (``"_query_dense.kernel"``)."""

    def strip_clustering(self):
        """A clean copy of the layer holding the clustered kernels, its
        weights in the original order (tfmot's MHA strip leaves constants
        in the sublayers and the variables under dotted names on the MHA,
        which reorders ``get_weights()``)."""
        weights = self.layer.get_weights()   # the clustered kernels are
        for position, name in sorted(self.position_original_weights.items()):
            weights.insert(position, np.asarray(   # tensors by now
                self.get_weight_from_layer(name)))
        clean = self.layer.__class__.from_config(self.layer.get_config())
        build_by_calling(clean, self)
        clean.set_weights(weights)
        return clean


class ClusterWeightsRNN(ClusterWeights, cluster_wrapper.ClusterWeightsRNN):
    """:class:`ClusterWeights` for recurrent layers: tfmot's RNN wrapper
    reads the kernels inside the cells (``"kernel/0"``)."""


def _wrapper_for(layer):
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return ClusterWeightsMHA
    if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
        return ClusterWeightsRNN
    return ClusterWeights


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
        return _wrapper_for(layer)(
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
    return {"ClusterWeights": ClusterWeights,
            "ClusterWeightsMHA": ClusterWeightsMHA,
            "ClusterWeightsRNN": ClusterWeightsRNN}
