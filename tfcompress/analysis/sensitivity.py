"""Per-layer sensitivity analysis, and per-layer settings that meet a budget.

:func:`analyze` compresses one layer at a time, without training, and
measures the accuracy drop on validation data:

* pruning: zero the smallest-magnitude ``s`` of the layer's kernel, for
  ``s`` in ``sparsities`` (0.5, 0.75, 0.9);
* clustering: replace the kernel by its 1-D k-means centroids, for ``k`` in
  ``clusters`` (16, 8, 4).

:func:`choose` picks per-layer settings (sparsity and whether to cluster)
that meet a target, and :meth:`Plan.recipe` writes them as a tfcompress
recipe (``prune: {per_layer: ...}``, ``cluster: {clusters, skip}``,
``quantize``). Targets:

* ``max_bytes``: the **gzip-compressed size of the int8 .tflite** (the
  ``tflite.gzip_bytes`` of ``report.json``; zeros and few unique values
  shrink it, as they shrink a download or an OTA update). Estimated as the
  real gzip size of the unmodified model's int8 conversion, plus, per layer,
  the change in gzip size of its int8-quantized kernel; then checked by
  converting the untrained compressed model and tightened when over.
* ``max_accuracy_drop``: the sum of the per-layer drops (fraction, e.g.
  0.02) measured without fine-tuning (pessimistic: fine-tuning recovers).

Among the plans that meet the target, the one with the smallest predicted
drop (``max_bytes``) or fewest bytes (``max_accuracy_drop``) wins. All layers
clustered share one cluster count (the recipe's ``cluster`` stage has one).

Example:
    >>> sens = analyze(model, x_val, y_val)
    >>> plan = choose(model, sens, x_val, max_bytes=12_000)
    >>> result = tfcompress.compress(model, (x, y), (x_val, y_val),
    ...                              plan.recipe(epochs=2))
    >>> write(sens, plan, "build/sensitivity")   # json, yaml, png
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from converters import progress
from converters.conversion.artifact import gzip_bytes  # the size report.json gives
from converters.conversion.signature import as_input  # token ids stay int
from tfcompress.keras2 import clustering
from tfcompress.keras2 import pruning
from tfcompress.keras2.env import keras
from tfcompress.generation import is_keras3

__all__ = ["Sensitivity", "Plan", "analyze", "choose", "gzip_bytes",
           "apply_settings", "write", "plot"]

_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")
SPARSITIES = (0.5, 0.75, 0.9)
CLUSTERS = (16, 8, 4)


@dataclasses.dataclass
class Sensitivity:
    """What :func:`analyze` measured: ``baseline`` accuracy and per layer
    ``{"layer", "weights", "prune": {s: drop}, "cluster": {k: drop}}``."""

    baseline: float
    layers: List[dict]
    metric: str = "accuracy"

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "metric": self.metric,
                "layers": [{**l, "prune": {str(k): v for k, v in l["prune"].items()},
                            "cluster": {str(k): v for k, v in l["cluster"].items()}}
                           for l in self.layers]}


@dataclasses.dataclass
class Plan:
    """Per-layer settings :func:`choose` picked, with its estimates."""

    settings: Dict[str, dict]     # layer -> {"sparsity": s, "clusters": k|None}
    clusters: Optional[int]       # the one cluster count, or None
    estimated_bytes: int          # gzip bytes of the int8 .tflite
    predicted_drop: float         # sum of per-layer drops (no fine-tuning)
    baseline_bytes: int           # gzip bytes of the uncompressed int8 model
    target: dict
    measured_bytes: Optional[int] = None   # converted, untrained
    measured_drop: Optional[float] = None  # all settings at once, untrained

    def recipe(self, epochs: int = 2, quantize: bool = True,
               fit: Optional[dict] = None) -> dict:
        """A recipe dict (valid for ``Recipe.from_dict``) applying the plan:
        prune (per layer, ``skip`` for the dense ones), cluster (one count,
        ``skip`` for the unclustered ones, zeros preserved), then QAT."""
        pruned = {n: s["sparsity"] for n, s in self.settings.items()
                  if s["sparsity"] > 0}
        dense = sorted(n for n, s in self.settings.items()
                       if s["sparsity"] == 0)
        clustered = [n for n, s in self.settings.items() if s["clusters"]]
        stages = []
        if pruned:
            stages.append({"prune": {
                "target_sparsity": 0.0, "per_layer": pruned, "skip": dense,
                "schedule": "polynomial", "epochs": epochs}})
        if clustered:
            stages.append({"cluster": {
                "clusters": int(self.clusters),
                "skip": sorted(set(self.settings) - set(clustered)),
                "preserve_sparsity": bool(pruned), "epochs": epochs}})
        if quantize or not stages:
            # explicit: "auto" reads a mix of clustered and dense kernels
            # as "not clustered", and plain QAT would undo the clusters
            keep = (["sparsity"] if pruned else []) + \
                (["clusters"] if clustered else [])
            stages.append({"quantize": {"preserve": keep or "auto",
                                        "epochs": epochs}})
        return {"stages": stages, "fit": dict(fit or {})}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _kernels(layer) -> list:
    return [w for w in layer.weights
            if w.name.split("/")[-1].split(":")[0] in _KERNELS]


def _candidates(model) -> List[Tuple[object, bool, List[int]]]:
    """``(layer, prunable, cluster counts allowed)`` for every leaf layer
    with a kernel that pruning or clustering would touch."""
    out = []
    if is_keras3(model):  # the Keras 3 wrappers' rules
        from tfcompress.keras3 import clustering as k3c, pruning as k3p
        prunable_ = lambda l: k3p._skip_reason(l, None, None) is None  # noqa
        clusters_ = lambda l, k: k3c._skip_reason(l, k, False, None) is None  # noqa
    else:
        prunable_ = lambda l: pruning._skip_reason(l, None) is None  # noqa
        clusters_ = lambda l, k: clustering._skip_reason(l, k, False, None) is None  # noqa
    for layer in model.layers:
        if not _kernels(layer) or type(layer).__name__ in (
                "Functional", "Sequential"):
            continue
        prunable = prunable_(layer)
        ks = [k for k in CLUSTERS + (2, 32, 64, 256) if clusters_(layer, k)]
        if prunable or ks:
            out.append((layer, prunable, ks))
    return out


def magnitude_prune(w: np.ndarray, sparsity: float) -> np.ndarray:
    """``w`` with its smallest-magnitude ``sparsity`` fraction set to 0."""
    flat = np.abs(w).ravel()
    n = int(round(sparsity * flat.size))
    if n <= 0:
        return w.copy()
    threshold = np.partition(flat, n - 1)[n - 1]
    out = w.copy()
    out[np.abs(w) <= threshold] = 0.0
    return out


def kmeans_1d(w: np.ndarray, k: int, keep_zeros: bool = False,
              iters: int = 30) -> np.ndarray:
    """``w`` with every value replaced by its nearest of ``k`` 1-D k-means
    centroids (quantile init, Lloyd iterations); zeros stay zero with
    ``keep_zeros``."""
    flat = w.ravel().astype(np.float64)
    mask = flat != 0 if keep_zeros else np.ones(flat.size, bool)
    vals = flat[mask]
    if vals.size == 0:
        return w.copy()
    centers = np.unique(np.quantile(vals, (np.arange(k) + 0.5) / k))
    for _ in range(iters):
        edges = (centers[1:] + centers[:-1]) / 2
        idx = np.searchsorted(edges, vals)
        sums = np.bincount(idx, vals, minlength=centers.size)
        counts = np.bincount(idx, minlength=centers.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
        if np.allclose(new, centers):
            break
        centers = np.sort(new)
    edges = (centers[1:] + centers[:-1]) / 2
    out = flat.copy()
    out[mask] = centers[np.searchsorted(edges, vals)]
    return out.reshape(w.shape).astype(w.dtype)


def _settle(w: np.ndarray, sparsity: float, clusters: Optional[int]) -> np.ndarray:
    if sparsity:
        w = magnitude_prune(w, sparsity)
    if clusters:
        w = kmeans_1d(w, clusters, keep_zeros=bool(sparsity))
    return w


def _accuracy(model, x, y, reference, batch_size: int) -> float:
    out = model.predict(x, batch_size=batch_size, verbose=0)
    pred = np.argmax(out.reshape(len(x), -1), -1)
    target = y if y is not None else reference
    return float(np.mean(pred == np.asarray(target).reshape(-1)))


def analyze(model, x: np.ndarray, y: Optional[np.ndarray] = None, *,
            sparsities: Sequence[float] = SPARSITIES,
            clusters: Sequence[int] = CLUSTERS,
            batch_size: int = 256) -> Sensitivity:
    """Accuracy drop of compressing each layer alone, without training.

    Args:
        model: a trained classifier (``tfcompress.keras``, outputs scores).
        x, y: validation inputs and integer labels; ``y=None`` measures
            agreement with the model's own predictions instead.
        sparsities: pruning levels to try per prunable layer.
        clusters: cluster counts to try per clusterable layer.

    Returns:
        :class:`Sensitivity`; drops are fractions (0.02 = 2 points).
    """
    x = as_input(x)
    reference = np.argmax(model.predict(x, batch_size=batch_size, verbose=0)
                          .reshape(len(x), -1), -1)
    base = _accuracy(model, x, y, reference, batch_size)
    rows = []
    plan = []
    for layer, prunable, allowed in _candidates(model):
        trials = [("prune", s, (s, None)) for s in sparsities if prunable] + \
                 [("cluster", k, (0.0, k)) for k in clusters if k in allowed]
        plan.append((layer, trials))
    with progress.bar(sum(len(t) for _, t in plan), "sensitivity sweep",
                      unit="trial") as bar:
        for layer, trials in plan:
            original = [w.numpy() for w in _kernels(layer)]
            row = {"layer": layer.name, "class": type(layer).__name__,
                   "weights": int(sum(w.size for w in original)),
                   "prune": {}, "cluster": {}}
            for kind, key, (s, k) in trials:
                for var, w in zip(_kernels(layer), original):
                    var.assign(_settle(w, s, k))
                row[kind][key] = round(
                    base - _accuracy(model, x, y, reference, batch_size), 6)
                for var, w in zip(_kernels(layer), original):
                    var.assign(w)
                bar.update()
            rows.append(row)
    return Sensitivity(base, rows, "accuracy" if y is not None else "agreement")


def _int8_gzip(w: np.ndarray) -> int:
    """gzip bytes of ``w`` quantized as the converter stores a kernel:
    symmetric int8 per output channel, output channel first."""
    a = np.asarray(w, np.float32)
    a = np.moveaxis(a, -1, 0) if a.ndim > 1 else a
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    scale = np.abs(flat).max(axis=1, keepdims=True) / 127.0
    q = np.round(flat / np.where(scale > 0, scale, 1.0)).astype(np.int8)
    return gzip_bytes(q.tobytes())


def apply_settings(model, settings: Dict[str, dict]):
    """A copy of ``model`` with each layer's kernel pruned/clustered per
    ``settings`` (no training)."""
    if is_keras3(model):
        import keras as keras3
        copy = keras3.models.clone_model(model)
    else:
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name, s in settings.items():
        for var in _kernels(copy.get_layer(name)):
            var.assign(_settle(var.numpy(), s["sparsity"], s["clusters"]))
    return copy


def _int8_tflite(model, x) -> bytes:
    from converters.conversion.modes import convert_bytes
    return convert_bytes(model, as_input(x)[:200], mode="int8")


def _options(layer, sens_row: dict, k: Optional[int]
             ) -> List[Tuple[float, Optional[int], int, float]]:
    """``(sparsity, clusters, gzip bytes, predicted drop)`` per option the
    sensitivity row measured."""
    originals = [w.numpy() for w in _kernels(layer)]
    out = []
    for s in (0.0,) + tuple(sorted(sens_row["prune"])):
        for c in (None,) + ((k,) if k in sens_row["cluster"] else ()):
            size = sum(_int8_gzip(_settle(w, s, c)) for w in originals)
            drop = max(0.0, sens_row["prune"].get(s, 0.0)) + \
                max(0.0, sens_row["cluster"].get(c, 0.0))
            out.append((s, c, size, drop))
    return out


def _greedy(options: Dict[str, list], max_bytes, max_drop, base: int):
    """Start uncompressed; repeatedly take the move with the most bytes
    saved per accuracy point lost until the target is met (``max_bytes``)
    or no move fits (``max_drop``). Returns ``(choice, bytes, drop)``."""
    choice = {n: 0 for n in options}

    def totals():
        return (base + sum(options[n][i][2] for n, i in choice.items()),
                sum(options[n][i][3] for n, i in choice.items()))
    while True:
        size, drop = totals()
        if max_bytes is not None and size <= max_bytes:
            break
        best, best_ratio = None, -1.0
        for n, i in choice.items():
            _, _, b0, d0 = options[n][i]
            for j, (_, _, b, d) in enumerate(options[n]):
                saved, cost = b0 - b, max(d - d0, 0.0)
                if saved <= 0:
                    continue
                if max_drop is not None and drop + cost > max_drop + 1e-12:
                    continue
                ratio = saved / (cost + 1e-6)
                if ratio > best_ratio:
                    best, best_ratio = (n, j), ratio
        if best is None:
            break
        choice[best[0]] = best[1]
    size, drop = totals()
    return choice, size, drop


def choose(model, sens: Sensitivity, x: np.ndarray, *,
           max_bytes: Optional[int] = None,
           max_accuracy_drop: Optional[float] = None,
           y: Optional[np.ndarray] = None, verify: bool = True,
           margin: float = 0.1) -> Plan:
    """Per-layer settings that meet ``max_bytes`` or ``max_accuracy_drop``.

    Args:
        model: the model :func:`analyze` measured.
        sens: its :class:`Sensitivity`.
        x: representative inputs (int8 calibration; with ``y``, the data
            for ``measured_drop``).
        max_bytes: target gzip bytes of the int8 .tflite.
        max_accuracy_drop: target summed per-layer drop (fraction).
        verify: convert the compressed untrained model and, when over
            ``max_bytes``, tighten the target by the excess and choose again.
        margin: aim this fraction below ``max_bytes``: fine-tuning, the
            trained centroids and QAT move the gzip size by a few percent
            (digits, PCQAT: +8% over the untrained estimate).

    Raises:
        ValueError: no target, two targets, or no setting meets the target.
    """
    if (max_bytes is None) == (max_accuracy_drop is None):
        raise ValueError("choose: give exactly one of max_bytes (gzip bytes "
                         "of the int8 .tflite) or max_accuracy_drop "
                         f"(got {max_bytes!r} and {max_accuracy_drop!r})")
    rows = {r["layer"]: r for r in sens.layers}
    cands = [model.get_layer(name) for name in rows]
    clusters = sorted({k for r in sens.layers for k in r["cluster"]},
                      reverse=True)
    real = gzip_bytes(_int8_tflite(model, x))
    plans = []
    for k in (None,) + tuple(clusters):
        options = {l.name: _options(l, rows[l.name], k) for l in cands}
        base = real - sum(o[0][2] for o in options.values())
        budget = None if max_bytes is None else int(max_bytes * (1 - margin))
        for _ in range(4):
            choice, size, drop = _greedy(options, budget, max_accuracy_drop,
                                         base)
            settings = {n: {"sparsity": options[n][i][0],
                            "clusters": options[n][i][1]}
                        for n, i in choice.items()}
            plan = Plan(settings, k, int(size), round(drop, 6), real,
                        {"max_bytes": max_bytes,
                         "max_accuracy_drop": max_accuracy_drop})
            if not verify or max_bytes is None or size > budget:
                break
            plan.measured_bytes = gzip_bytes(_int8_tflite(
                apply_settings(model, settings), x))
            if plan.measured_bytes <= budget:
                break
            budget -= plan.measured_bytes - budget
        plans.append(plan)
    if max_bytes is not None:
        ok = [p for p in plans if (p.measured_bytes or p.estimated_bytes)
              <= max_bytes]
        if not ok:
            smallest = min(plans, key=lambda p: p.estimated_bytes)
            raise ValueError(
                f"choose: max_bytes={max_bytes} cannot be met: the smallest "
                f"plan is {smallest.estimated_bytes} gzip bytes (uncompressed "
                f"{real}); raise max_bytes or add higher sparsities/fewer "
                "clusters")
        best = min(ok, key=lambda p: (p.predicted_drop, p.estimated_bytes))
    else:
        best = min(plans, key=lambda p: (p.estimated_bytes, p.predicted_drop))
    compressed = apply_settings(model, best.settings)
    if best.measured_bytes is None:
        best.measured_bytes = gzip_bytes(_int8_tflite(compressed, x))
    if y is not None:
        best.measured_drop = round(sens.baseline - _accuracy(
            compressed, as_input(x), y, None, 256), 6)
    return best


def plot(sens: Sensitivity, path: str) -> Optional[str]:
    """PNG: accuracy drop per layer vs sparsity (left) and vs clusters
    (right)."""
    if not sens.layers:
        return None
    from converters.reporting.plots import _plt, _save
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for row in sens.layers:
        if row["prune"]:
            xs = sorted(row["prune"])
            left.plot([100 * s for s in xs], [100 * row["prune"][s] for s in xs],
                      marker="o", label=row["layer"])
        if row["cluster"]:
            ks = sorted(row["cluster"], reverse=True)
            right.plot([str(k) for k in ks], [100 * row["cluster"][k] for k in ks],
                       marker="o", label=row["layer"])
    left.set_xlabel("sparsity of the layer alone (%)")
    left.set_ylabel(f"{sens.metric} drop (points)")
    left.set_title("pruning sensitivity (no fine-tuning)")
    right.set_xlabel("clusters of the layer alone")
    right.set_title("clustering sensitivity (no fine-tuning)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def write(sens: Sensitivity, plan: Optional[Plan], out_dir: str, *,
          epochs: int = 2, quantize: bool = True,
          fit: Optional[dict] = None) -> Dict[str, str]:
    """Write ``sensitivity.json``, ``sensitivity.png`` and (with a plan)
    ``recipe.yaml`` to ``out_dir``; return their paths."""
    import yaml
    from converters.files import atomic_write
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "sensitivity.json")}
    body = {"sensitivity": sens.to_dict(),
            "plan": plan.to_dict() if plan is not None else None}
    atomic_write(paths["json"], json.dumps(body, indent=2))
    if png := plot(sens, os.path.join(out_dir, "sensitivity.png")):
        paths["png"] = png
    if plan is not None:
        paths["recipe"] = os.path.join(out_dir, "recipe.yaml")
        atomic_write(paths["recipe"], yaml.safe_dump(
            plan.recipe(epochs, quantize, fit), sort_keys=False))
    return paths
