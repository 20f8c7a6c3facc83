"""Channel (filter) pruning that shrinks the model: fewer filters, fewer
MACs, a smaller and faster .tflite (magnitude pruning only zeroes weights,
which dense int8 kernels still multiply).

Filters of ``Conv1D/2D/3D`` and ``Dense`` layers (and the channels of the
``DepthwiseConv2D`` layers they feed) are ranked by a criterion, the lowest
are removed, and the matching input channels of every layer that reads them
are removed too. Channels are followed through the graph:

* per-channel layers (``BatchNormalization``, ``DepthwiseConv2D``,
  ``PReLU``) and element-wise / pooling / padding layers pass channels
  through (their per-channel weights are sliced);
* ``Add``/``Multiply``/... tie their inputs' channels together: the layers
  whose outputs are merged form one *group* pruned jointly, ranked by the
  criterion summed over the group's filters (every producer's, and the
  ``DepthwiseConv2D`` channels that read the group);
* ``Concatenate`` (last axis) stacks groups; ``Flatten`` repeats channels per
  position (the following ``Dense`` drops every copy);
* a channel that reaches a model output, a ``Reshape``, a softmax, a shared
  or an unknown layer is kept (the report names the reason).

Criteria: ``"l1"`` / ``"l2"``: norm of each filter's weights; ``"taylor"``:
first-order Taylor estimate of the loss change when the filter is removed,
``|sum(w * dL/dw)|`` over the filter's kernel and bias, accumulated (summed)
over a few batches of ``data``.

The result is a new, smaller, plain Keras model rebuilt from the config with
reduced ``filters``/``units``; fine-tune it with your own ``fit``.

Example:
    >>> small, report = prune_channels(model, ratio=0.5, criterion="l1")
    >>> print(report)               # groups, params and MACs before/after
    >>> small.compile(...); small.fit(x, y, epochs=3)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfcompress.keras2.env import keras, tf
from tfcompress.keras2.channel_graph import (  # noqa: F401
    _CONV, _DEPTHWISE, _L, SKIP_ALL_KEPT, SKIP_INPUT, SKIP_MISALIGNED,
    SKIP_OUTPUT, SKIP_SOFTMAX, _Desc, _Graph, _Groups, _LayerIO)
from tfcompress.keras2.selection import CompressionReport

CRITERIA = ("l1", "l2", "taylor")
TECHNIQUE = "channel_prune"


def _filter_weights(layer, kind: str) -> list:
    """``[(variable, channel axis)]`` of a scored layer."""
    main = layer.depthwise_kernel if kind == "depthwise" else layer.kernel
    out = [(main, -2 if kind == "depthwise" else -1)]
    if getattr(layer, "use_bias", False) and layer.bias is not None:
        out.append((layer.bias, -1))
    return out


def _per_channel(values: np.ndarray, axis: int, op: str) -> np.ndarray:
    moved = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
    if op == "l1":
        return np.abs(moved).sum(0)
    if op == "l2":
        return np.square(moved.astype(np.float64)).sum(0)
    return moved.sum(0)  # taylor: sum of w * grad


def _taylor(model, graph: _Graph, data, loss, batches: int, batch_size: int
            ) -> Dict[str, np.ndarray]:
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                "prune_channels(criterion='taylor') needs a loss: compile the "
                "model or pass loss='sparse_categorical_crossentropy' (or a "
                "loss object)")
    loss_fn = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    if isinstance(data, tf.data.Dataset):
        stream = data.take(batches)
    else:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(
                "prune_channels(criterion='taylor') needs data=(x, y) arrays "
                "or a tf.data.Dataset of (x, y) batches; got "
                f"{type(data).__name__}")
        x, y = data
        stream = [(x[i:i + batch_size], y[i:i + batch_size])
                  for i in range(0, min(len(x), batches * batch_size),
                                 batch_size)]
    owned = {name: _filter_weights(model.get_layer(name), kind)
             for name, kind, _ in graph.owners}
    variables = [v for ws in owned.values() for v, _ in ws]
    totals: Dict[str, np.ndarray] = {}
    for xb, yb in stream:
        with tf.GradientTape() as tape:
            loss_value = loss_fn(yb, model(xb, training=False))
        grads = dict(zip([id(v) for v in variables],
                         tape.gradient(loss_value, variables)))
        for name, ws in owned.items():
            s = sum(_per_channel(v.numpy() * grads[id(v)].numpy(), axis, "t")
                    for v, axis in ws if grads[id(v)] is not None)
            totals[name] = totals.get(name, 0) + np.abs(s)
    if not totals:
        raise ValueError("prune_channels(criterion='taylor'): data gave no "
                         "batch; pass at least one (x, y) batch")
    return totals


def _layer_scores(model, graph: _Graph, criterion: str, data, loss,
                  batches: int, batch_size: int) -> Dict[str, np.ndarray]:
    if criterion == "taylor":
        return _taylor(model, graph, data, loss, batches, batch_size)
    out = {}
    for name, kind, _ in graph.owners:
        var, axis = _filter_weights(model.get_layer(name), kind)[0]
        s = _per_channel(var.numpy(), axis, criterion)
        out[name] = np.sqrt(s) if criterion == "l2" else s
    return out


# -- plan, apply, mask ----------------------------------------------------------
@dataclasses.dataclass
class ChannelPlan:
    """Which channels of which group to keep (``keep``: group -> sorted
    indices, only for groups that lose channels) and the group scores."""

    graph: _Graph
    keep: Dict[int, np.ndarray]
    scores: Dict[int, np.ndarray]
    criterion: str
    ratio: float

    def indices(self, desc: _Desc) -> Optional[np.ndarray]:
        return self.graph.indices(desc, self.keep)


def _n_keep(n: int, ratio: float, multiple_of: int) -> int:
    k = max(1, int(round(n * (1.0 - ratio))))
    if multiple_of > 1:
        k = int(math.ceil(k / multiple_of) * multiple_of)
    return min(k, n)


def plan_channels(model, ratio: float = 0.5, criterion: str = "l1",
                  data=None, skip: Optional[Sequence] = None, *,
                  multiple_of: int = 1, loss=None, batches: int = 4,
                  batch_size: int = 32) -> ChannelPlan:
    """Rank the channels of every prunable group; keep the best
    ``1 - ratio`` (at least one; rounded up to ``multiple_of``).

    Example:
        >>> plan = plan_channels(model, 0.5, "l2")
        >>> small = apply_plan(model, plan)
    """
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"ratio should be in [0, 1), got {ratio!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid: "
                         f"{list(CRITERIA)}")
    if criterion == "taylor" and data is None:
        raise ValueError("criterion='taylor' needs data=(x, y) (a few batches"
                         " of training data); or use criterion='l1'")
    if int(multiple_of) < 1:
        raise ValueError(f"multiple_of should be >= 1, got {multiple_of!r}")
    graph = _Graph(model, skip)
    per_layer = _layer_scores(model, graph, criterion, data, loss, batches,
                              batch_size)
    find = graph.groups.find
    scores: Dict[int, np.ndarray] = {}
    for name, _, desc in graph.owners:
        offset = 0
        for gid, size in desc.segments:
            root = find(gid)
            if size is not None and graph.prunable(root):
                part = np.asarray(per_layer[name][offset:offset + size],
                                  np.float64)
                scores[root] = scores.get(root, 0) + part
            offset += size or 0
    keep = {}
    for root, s in scores.items():
        k = _n_keep(len(s), ratio, int(multiple_of))
        if k < len(s):
            keep[root] = np.sort(np.argsort(-s, kind="stable")[:k])
    return ChannelPlan(graph, keep, scores, criterion, float(ratio))


def _slice(layer, io: _LayerIO, plan: ChannelPlan, weights: list) -> list:
    if io is None or io.kind in ("pass", "opaque", "input"):
        return weights
    src = plan.indices(io.inputs[0])
    if io.kind == "producer":
        dst = plan.indices(io.output)
        kernel = weights[0]
        if src is not None:
            kernel = kernel.take(src, axis=-2)
        if dst is not None:
            kernel = kernel.take(dst, axis=-1)
            return [kernel] + [w.take(dst, axis=-1) for w in weights[1:]]
        return [kernel] + weights[1:]
    if src is None:
        return weights
    if io.kind == "depthwise":
        return [weights[0].take(src, axis=-2)] + [w.take(src, axis=-1)
                                                  for w in weights[1:]]
    return [w.take(src, axis=-1) for w in weights]  # channelwise


def apply_plan(model, plan: ChannelPlan, custom_objects: Optional[dict] = None):
    """A new, smaller model: ``model``'s config with fewer ``filters`` /
    ``units`` and the kept slices of its weights."""
    config = model.get_config()
    for lc in config["layers"]:
        io = plan.graph.layers.get(lc["config"]["name"])
        if io is not None and io.kind == "producer":
            dst = plan.indices(io.output)
            if dst is not None:
                key = "units" if "units" in lc["config"] else "filters"
                lc["config"][key] = int(len(dst))
    cls = keras.Sequential if plan.graph.sequential else keras.Model
    small = cls.from_config(config, custom_objects=custom_objects)
    for layer in small.layers:
        orig = model.get_layer(layer.name)
        layer.set_weights(_slice(orig, plan.graph.layers.get(layer.name), plan,
                                 orig.get_weights()))
    return small


def mask_plan(model, plan: ChannelPlan):
    """The reference for :func:`apply_plan`: a same-size copy of ``model``
    whose consumers ignore the removed channels (their input-channel
    weights are zero). Its outputs equal the shrunk model's."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name, io in plan.graph.layers.items():
        if io.kind != "producer":
            continue
        src = plan.indices(io.inputs[0])
        if src is None:
            continue
        layer = copy.get_layer(name)
        kernel = layer.kernel.numpy()
        cut = np.setdiff1d(np.arange(kernel.shape[-2]), src)
        kernel[..., cut, :] = 0.0
        layer.kernel.assign(kernel)
    return copy


# -- measurement ----------------------------------------------------------------
def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _out_positions(layer) -> int:
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return int(math.prod(d for d in shape[1:-1] if d is not None))


def count_macs(model) -> int:
    """Multiply-accumulates of one inference (batch 1), counted for the
    ``Conv``, ``Conv2DTranspose``, ``DepthwiseConv``, ``SeparableConv`` and
    ``Dense`` layers (the others are a small fraction in CNNs).

    Example:
        >>> count_macs(model)
        5830656
    """
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, (_L.SeparableConv1D, _L.SeparableConv2D)):
            total += (int(np.prod(layer.depthwise_kernel.shape))
                      + int(np.prod(layer.pointwise_kernel.shape))) \
                * _out_positions(layer)
        elif isinstance(layer, _DEPTHWISE):
            total += int(np.prod(layer.depthwise_kernel.shape)) \
                * _out_positions(layer)
        elif isinstance(layer, (_L.Conv2DTranspose, _L.Conv3DTranspose,
                                _L.Conv1DTranspose)):
            positions = int(math.prod(d for d in layer.input_shape[1:-1]))
            total += int(np.prod(layer.kernel.shape)) * positions
        elif isinstance(layer, _CONV):
            total += int(np.prod(layer.kernel.shape)) * _out_positions(layer)
        elif isinstance(layer, _L.Dense):
            total += int(np.prod(layer.kernel.shape)) * _out_positions(layer)
    return total


# -- report and one-call API ------------------------------------------------------
@dataclasses.dataclass
class ChannelPruningReport:
    """What :func:`prune_channels` did: per group the producing layers, the
    channels before/after (or why it was kept), and params/MACs."""

    criterion: str
    ratio: float
    groups: List[dict]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    layers: CompressionReport

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["layers"] = self.layers.to_dict()
        return out

    def __str__(self) -> str:
        rows = [f"channel pruning, {self.criterion}, ratio {self.ratio}: "
                f"params {self.params_before:,} -> {self.params_after:,}, "
                f"MACs {self.macs_before:,} -> {self.macs_after:,}"]
        for g in self.groups:
            tail = f" ({g['reason']})" if g["reason"] else ""
            rows.append(f"  {'+'.join(g['layers']):40s} {g['channels']:5d} -> "
                        f"{g['kept']:5d}{tail}")
        return "\n".join(rows)


def _groups_summary(plan: ChannelPlan) -> List[dict]:
    graph, out = plan.graph, []
    for root in graph.roots():
        n = graph.groups.size[root]
        kept = plan.keep.get(root)
        reason = graph.groups.reason.get(root, "" if kept is not None
                                         else SKIP_ALL_KEPT)
        out.append({"layers": list(graph.groups.producers[root]),
                    "channels": n, "kept": n if kept is None else len(kept),
                    "reason": reason})
    return out


def prune_channels(model, ratio: float = 0.5, criterion: str = "l1",
                   data=None, skip: Optional[Sequence] = None, *,
                   multiple_of: int = 1, loss=None, batches: int = 4,
                   batch_size: int = 32,
                   report: Optional[CompressionReport] = None,
                   custom_objects: Optional[dict] = None):
    """Remove the lowest-ranked ``ratio`` of the filters of every prunable
    layer group and return a new, smaller model.

    Args:
        model: a built Sequential or Functional ``tfcompress.keras`` model.
        ratio: fraction of each group's channels to remove, in ``[0, 1)``.
        criterion: ``"l1"``, ``"l2"`` (filter norms) or ``"taylor"``
            (``|sum(w * grad)|`` per filter, summed over ``batches`` batches).
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)``
            batches; needed for ``"taylor"``.
        skip: layer selectors (name, class, class name, ``"re:<regex>"``) of
            producers whose filters are all kept (and their whole group).
        multiple_of: round each kept count up to a multiple (e.g. 8 for
            SIMD-friendly widths).
        loss: for ``"taylor"``: the loss (default: the compiled loss).
        batches, batch_size: how much of ``data`` ``"taylor"`` uses.
        report: a :class:`CompressionReport` to add per-layer entries to.
        custom_objects: custom layers needed to rebuild the model.

    Returns:
        ``(smaller_model, ChannelPruningReport)``; the model is not compiled.

    Example:
        >>> small, rep = prune_channels(model, 0.5, "taylor", data=(x, y))
        >>> rep.params_after / rep.params_before
        0.31
    """
    plan = plan_channels(model, ratio, criterion, data, skip,
                         multiple_of=multiple_of, loss=loss, batches=batches,
                         batch_size=batch_size)
    small = apply_plan(model, plan, custom_objects)
    layers = report if report is not None else CompressionReport()
    groups = _groups_summary(plan)
    for g in groups:
        for name in g["layers"]:
            layer = model.get_layer(name)
            if g["kept"] < g["channels"]:
                layers.add(layer, TECHNIQUE, "compressed")
            else:
                layers.add(layer, TECHNIQUE, "skipped", g["reason"])
    rep = ChannelPruningReport(
        criterion, float(ratio), groups, int(model.count_params()),
        int(small.count_params()), count_macs(model), count_macs(small),
        layers)
    return small, rep


def compare_deployed(models: Dict[str, object], representative_data, *,
                     runs: int = 100, threads: Sequence[int] = (1,),
                     warmup: int = 10) -> dict:
    """Params, MACs, int8 .tflite bytes and interleaved LiteRT latency of
    Keras models side by side (e.g. ``{"unpruned": m, "pruned": small}``).

    Returns:
        ``{name: {"params", "macs", "bytes", "tflite", "latency": {threads:
        {"median_ms", "p90_ms", ...}}}}``.
    """
    from converters.runtimes import latency
    from converters.conversion.modes import convert_bytes
    out = {}
    for name, m in models.items():
        b = convert_bytes(m, representative_data, mode="int8")
        out[name] = {"params": int(m.count_params()), "macs": count_macs(m),
                     "bytes": len(b), "tflite": b}
    lat = latency.compare({n: r["tflite"] for n, r in out.items()},
                          threads=threads, runs=runs, warmup=warmup)
    for name in out:
        out[name]["latency"] = lat["models"][name]["threads"]
    return out
