"""Weight clustering for Keras 3: ``cluster`` wraps a model.

:class:`ClusterWrapper` makes a kernel take at most ``clusters`` values per
output channel (``per_channel``) or per kernel: trainable centroids, and
each weight is assigned to its nearest centroid on every training step.
Gradients reach both the centroids and the underlying weights (straight
through), so weights can move between clusters. With ``preserve_sparsity``
zero weights stay zero (one of the values is 0). Centroids start from
k-means++ (scikit-learn) or evenly spaced over the weight range.
"""

from __future__ import annotations

from typing import Iterable, Optional

import keras
import numpy as np
from keras import ops

from tfcompress.keras3 import report as rp
from tfcompress.keras3.base import WeightWrapper, read, resolve, rewrite
from tfcompress.keras3.selection import channel_axis, kernel_names, matches

INITS = ("kmeans++", "linear")


def init_centroids(values: np.ndarray, k: int, init: str,
                   seed: int = 0) -> np.ndarray:
    """``k`` centroids for the 1-D ``values`` (repeats fill up when there
    are fewer distinct values than ``k``)."""
    uniq = np.unique(values)
    if uniq.size <= k:
        return np.resize(uniq, k).astype(np.float32)
    if init == "linear":
        return np.linspace(values.min(), values.max(), k).astype(np.float32)
    from sklearn.cluster import KMeans
    km = KMeans(k, init="k-means++", n_init=1, random_state=seed,
                max_iter=50).fit(values.reshape(-1, 1).astype(np.float64))
    return np.sort(km.cluster_centers_[:, 0]).astype(np.float32)


def channels_last(value, axis: int):
    """``value`` with ``axis`` moved last, as a 2-D ``(n, channels)``."""
    moved = np.moveaxis(np.asarray(value), axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def _perm(rank: int, axis: int) -> list:
    return [axis] + [i for i in range(rank) if i != axis]


def to_rows(value, axis: int):
    """``value`` as ``(channels, n)`` rows, channels along ``axis``."""
    axis %= len(value.shape)
    if axis:
        value = ops.transpose(value, _perm(len(value.shape), axis))
    return ops.reshape(value, (value.shape[0], -1))


def from_rows(rows, shape, axis: int):
    """The inverse of :func:`to_rows` for a weight of ``shape``."""
    axis %= len(shape)
    perm = _perm(len(shape), axis)
    moved = ops.reshape(rows, [shape[i] for i in perm])
    return ops.transpose(moved, np.argsort(perm).tolist()) if axis else moved


def gather_rows(table, index):
    """``table[c, index[c, i]]``: ``table`` ``(c, k)``, ``index`` ``(c, n)``;
    differentiable with respect to ``table``."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return tf.gather(table, index, batch_dims=1)
    return ops.take_along_axis(table, index, axis=-1)


def _count_below(bounds, rows):
    """Per row, how many of the sorted ``bounds`` (``(c, k-1)``) are below
    each of ``rows`` (``(c, n)``): a binary search on TensorFlow, a
    comparison count elsewhere."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return tf.searchsorted(bounds, rows, side="left", out_type=tf.int32)
    below = ops.expand_dims(rows, -1) > ops.expand_dims(bounds, 1)
    return ops.sum(ops.cast(below, "int32"), axis=-1)


def nearest_centroids(rows, centroids):
    """Each value of ``rows`` (``(c, n)``) replaced by the nearest of its
    row's ``centroids`` (``(c, k)``): the centroid ``argmin |value -
    centroid|`` picks (the first of equal ones), found without the
    ``(c, n, k)`` distance tensor: a binary search between the midpoints
    of the sorted centroids. The gradient reaches each centroid summed over
    the values assigned to it."""
    fixed = ops.stop_gradient(centroids)
    ordered = ops.sort(fixed, axis=-1)
    bounds = (ordered[:, 1:] + ordered[:, :-1]) / 2
    position = _count_below(bounds, ops.stop_gradient(rows))
    # sorted position -> the first centroid holding that value
    same = ops.equal(ops.expand_dims(ordered, -1), ops.expand_dims(fixed, 1))
    first = ops.cast(ops.argmax(ops.cast(same, "int32"), axis=-1), "int32")
    return gather_rows(gather_rows(centroids, first), position)


def _clustered(value, centroids, axis: int):
    return from_rows(nearest_centroids(to_rows(value, axis), centroids),
                     tuple(value.shape), axis)


_XLA: dict = {}


def _fused(fn):
    """``fn`` compiled by XLA into one op on the TensorFlow backend (its
    dozen small ops cost more to dispatch than to run); as is elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return fn
    if fn not in _XLA:
        import tensorflow as tf
        _XLA[fn] = tf.function(fn, jit_compile=True, autograph=False)
    return _XLA[fn]


def cluster_values(value, centroids, mask, axis: int):
    """Each weight replaced by its nearest centroid of its channel.

    ``centroids``: ``(channels, k)``; ``mask``: 1 where the weight may be
    non-zero (``None``: no sparsity to keep)."""
    clustered = _fused(_clustered)(value, centroids, axis)
    if mask is not None:
        clustered = clustered * mask
    return clustered


@keras.saving.register_keras_serializable("tfcompress")
class ClusterWrapper(WeightWrapper):
    """Constrain the weights ``weight_names`` of ``layer`` to ``clusters``
    values (per channel with ``per_channel``).

    Example:
        >>> dense = ClusterWrapper(trained_dense, clusters=16)
    """

    def __init__(self, layer, clusters: int = 16, init: str = "kmeans++",
                 preserve_sparsity: bool = False, per_channel: bool = True,
                 weight_names=None, **kwargs):
        super().__init__(layer, weight_names if weight_names is not None
                         else kernel_names(layer), **kwargs)
        self.clusters = int(clusters)
        self.init = init
        self.preserve_sparsity = bool(preserve_sparsity)
        self.per_channel = bool(per_channel)

    def _channels(self, name) -> int:
        shape = resolve(self.layer, name).shape
        return int(shape[channel_axis(self.layer, name)]) \
            if self.per_channel else 1

    def _axis(self, name) -> int:
        return channel_axis(self.layer, name) if self.per_channel else -1

    def _free(self) -> int:
        """Trainable values per channel (the kept zero is one more)."""
        return self.clusters - 1 if self.preserve_sparsity else self.clusters

    def build_state(self):
        self.centroids, self.masks = {}, {}
        for n in self.weight_names:
            key = n.replace(".", "_")
            self.centroids[n] = self.add_weight(
                name=key + "_centroids", shape=(self._channels(n),
                                                self._free()),
                initializer="zeros", trainable=True)
            if self.preserve_sparsity:
                self.masks[n] = self.add_weight(
                    name=key + "_mask", initializer="ones", trainable=False,
                    shape=tuple(resolve(self.layer, n).shape))

    def initialize(self):
        for n in self.weight_names:
            value = ops.convert_to_numpy(resolve(self.layer, n).value)
            k = self._free()
            if self.per_channel:
                cols = channels_last(value, self._axis(n)).T
            else:
                cols = value.reshape(1, -1)
            if self.preserve_sparsity:
                self.masks[n].assign((value != 0).astype(np.float32))
            rows = []
            for col in cols:
                nz = col[col != 0] if self.preserve_sparsity else col
                nz = nz if nz.size else np.zeros(1, np.float32)
                rows.append(init_centroids(nz, k, self.init))
            self.centroids[n].assign(np.stack(rows).astype(np.float32))

    def transform(self, name, value, training):
        mask = read(self.masks[name]) if self.preserve_sparsity else None
        centroids = read(self.centroids[name])
        if not self.per_channel:
            out = ops.reshape(cluster_values(
                ops.reshape(value, (1, -1)), centroids, None, 0), value.shape)
        else:
            out = cluster_values(value, centroids, None, self._axis(name))
        if training:  # straight-through: the weights train too
            out = out + value - ops.stop_gradient(value)
        if mask is not None:
            out = out * mask
        return out

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters,
                "init": self.init, "preserve_sparsity": self.preserve_sparsity,
                "per_channel": self.per_channel}


def _skip_reason(layer, clusters, per_channel, skip) -> Optional[str]:
    if matches(layer, skip):
        return rp.SKIP_USER
    if isinstance(layer, keras.Model):
        return rp.SKIP_NESTED
    if not layer.weights:
        return rp.SKIP_NO_WEIGHTS
    names = kernel_names(layer)
    if not names:
        return rp.SKIP_NO_SUPPORT
    for n in names:
        shape = resolve(layer, n).shape
        size = int(np.prod(shape))
        if per_channel:
            size //= int(shape[channel_axis(layer, n)])
        if size <= clusters:
            return rp.SKIP_TOO_SMALL
    return None


def cluster(model, clusters: int = 16, init: str = "kmeans++", *,
            preserve_sparsity: bool = False, per_channel: bool = True,
            skip: Optional[Iterable] = None,
            report: Optional[rp.CompressionReport] = None):
    """Wrap every clusterable layer of a Keras 3 ``model`` for clustering.

    Args:
        model: a trained Sequential or Functional Keras 3 model (centroids
            start from its weights).
        clusters: values per kernel (per output channel if ``per_channel``),
            the zero included with ``preserve_sparsity``.
        init: ``"kmeans++"`` or ``"linear"``.
        preserve_sparsity: keep zeros at zero (after pruning).
        per_channel: cluster each output channel separately.
        skip: layers to leave alone: names, classes, class names, ``"re:.."``.
        report: a :class:`CompressionReport` to append to.

    Example:
        >>> clustered = cluster(stripped, 16, preserve_sparsity=True)
    """
    if not isinstance(clusters, int) or clusters < 2:
        raise ValueError(f"cluster: clusters should be an int >= 2, got "
                         f"{clusters!r}.")
    if init not in INITS:
        raise ValueError(f"cluster: unknown init {init!r} for Keras 3 "
                         f"models; valid: {list(INITS)}.")

    def decide(layer):
        reason = _skip_reason(layer, clusters, per_channel, skip)
        if reason is not None:
            return layer, reason
        return ClusterWrapper(layer, clusters, init, preserve_sparsity,
                              per_channel, name=layer.name), None

    new_model, report = rewrite(model, decide, "cluster", report)
    if not report.compressed:
        raise ValueError(f"cluster: no layer of model {model.name!r} can be "
                         f"clustered (skipped: {report.skipped}).")
    return new_model
