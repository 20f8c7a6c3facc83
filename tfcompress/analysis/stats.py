"""Per-layer sparsity and unique-weight counts for any Keras model.

Works on plain, wrapped (pruned, clustered, quantized) and stripped models:
it reads each layer's kernels (the inner layer's for wrappers), so the
numbers are what conversion will see.
"""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel",
                 "embeddings")


@dataclasses.dataclass
class KernelStats:
    layer: str
    weight: str
    shape: tuple
    size: int
    sparsity: float
    unique: int
    unique_per_channel_max: int

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return d


def _kernel_weights(layer):
    """(name, variable) for the weights compression acts on."""
    # A wrapper lists its inner layer's weights (QAT moves the kernel from
    # the inner layer to the wrapper), so the top layer's weights suffice.
    return [(_short(w.name), w) for w in layer.weights
            if _short(w.name) in _KERNEL_NAMES]


def _short(name: str) -> str:
    return name.split("/")[-1].split(":")[0]


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):
            yield from _leaf_layers(layer)
        else:
            yield layer


def array_stats(layer_name: str, weight_name: str, values: np.ndarray
                ) -> KernelStats:
    values = np.asarray(values)
    flat = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else \
        values.reshape(-1, 1)
    per_channel = int(_unique_per_column(flat).max()) if flat.size else 0
    return KernelStats(layer_name, weight_name, tuple(values.shape),
                       int(values.size), float(np.mean(values == 0)),
                       int(len(np.unique(values))), int(per_channel))


def _unique_per_column(flat: np.ndarray) -> np.ndarray:
    """``len(np.unique(flat[:, c]))`` for every column, from one sort
    (equal values adjacent; all NaNs count as one, as in ``np.unique``)."""
    ordered = np.sort(flat, axis=0)
    if ordered.shape[0] < 2:
        return np.full(ordered.shape[1], ordered.shape[0])
    changes = ordered[1:] != ordered[:-1]
    if np.issubdtype(ordered.dtype, np.floating):
        nan = np.isnan(ordered)
        changes &= ~(nan[1:] & nan[:-1])
    return 1 + np.count_nonzero(changes, axis=0)


def kernel_stats(model) -> List[KernelStats]:
    """Stats of every kernel in ``model`` (nested models included).

    Example:
        >>> for s in kernel_stats(model): print(s.layer, s.sparsity, s.unique)
    """
    rows = []
    for layer in _leaf_layers(model):
        for name, w in _kernel_weights(layer):
            user_name = getattr(layer, "layer", layer).name  # inside wrappers
            rows.append(array_stats(user_name, name, _effective(layer, w)))
    return rows


def _effective(layer, w) -> np.ndarray:
    """The values the layer computes with.

    A clustering wrapper writes the clustered kernel into the inner layer on
    every call; a pruning wrapper multiplies by its mask every step, so the
    mask is applied here too in case the last update has not run yet.
    """
    values = w.numpy()
    for weight, mask, _ in getattr(layer, "pruning_vars", ()):
        if weight is w:   # tfmot pairs each weight with its own mask (a
            return values * mask.numpy()   # MultiHeadAttention has four)
    for v in getattr(layer, "weights", []):
        if _short(v.name).startswith("mask") and \
                tuple(v.shape) == values.shape:
            values = values * v.numpy()
    return values


def summary(model) -> dict:
    """Model-level totals: overall sparsity of kernels and max unique values."""
    rows = kernel_stats(model)
    total = sum(r.size for r in rows)
    zeros = sum(r.sparsity * r.size for r in rows)
    return {
        "kernel_params": int(total),
        "sparsity": float(zeros / total) if total else 0.0,
        "max_unique": max((r.unique for r in rows), default=0),
        "layers": [r.to_dict() for r in rows],
    }
