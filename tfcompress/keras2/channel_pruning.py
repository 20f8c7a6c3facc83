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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfcompress.keras2.env import keras, tf
from tfcompress.keras2.selection import (SKIP_USER, CompressionReport, check_functional,
                                  matches)

CRITERIA = ("l1", "l2", "taylor")
TECHNIQUE = "channel_prune"
SKIP_OUTPUT = "feeds a model output"
SKIP_INPUT = "merged with a model input"
SKIP_SOFTMAX = "softmax across channels"
SKIP_MISALIGNED = "merged with a tensor of another channel layout"
SKIP_ALL_KEPT = "ratio keeps every channel"

_L = keras.layers
_CONV = tuple(c for c in (_L.Conv1D, _L.Conv2D, _L.Conv3D))
_DEPTHWISE = tuple(getattr(_L, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D")
                   if hasattr(_L, n))
_CHANNELWISE = (_L.BatchNormalization, _L.PReLU)
_PASS = tuple(getattr(_L, n) for n in (
    "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D")
    if hasattr(_L, n))
_MERGE = (_L.Add, _L.Subtract, _L.Multiply, _L.Average, _L.Maximum,
          _L.Minimum)
_CHANNEL_MIXING = ("softmax", "log_softmax")


# -- graph analysis -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Desc:
    """Channel layout of one tensor: ``(group, size)`` segments along the
    last axis; ``spatial`` > 1 after ``Flatten`` (each channel repeated once
    per position, channel index fastest)."""

    segments: Tuple[Tuple[int, Optional[int]], ...]
    spatial: int = 1

    @property
    def channels(self) -> Optional[int]:
        sizes = [s for _, s in self.segments]
        return None if None in sizes else sum(sizes)


@dataclasses.dataclass
class _LayerIO:
    kind: str  # producer | depthwise | channelwise | pass | opaque | input
    inputs: List[_Desc]
    output: Optional[_Desc]


class _Groups:
    """Union-find over channel groups; a root carries its fixed reason."""

    def __init__(self):
        self.parent: List[int] = []
        self.size: List[Optional[int]] = []
        self.reason: Dict[int, str] = {}
        self.producers: Dict[int, List[str]] = {}

    def new(self, size: Optional[int], producer: Optional[str] = None,
            fixed: str = "") -> int:
        """A new group; without a producer it is ``fixed`` (channels of a
        model input or of an unknown layer cannot be removed)."""
        gid = len(self.parent)
        self.parent.append(gid)
        self.size.append(size)
        self.producers[gid] = [producer] if producer else []
        if fixed:
            self.reason[gid] = fixed
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def fix(self, gid: int, reason: str) -> None:
        self.reason.setdefault(self.find(gid), reason)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        self.producers[ra] += self.producers.pop(rb)
        if rb in self.reason:
            self.reason.setdefault(ra, self.reason.pop(rb))


def _refs(node) -> List[Tuple[str, int, int]]:
    """``[name, node, tensor, kwargs]`` references in an inbound-node entry
    of a Functional config, in order (nested kwargs included)."""
    if (isinstance(node, (list, tuple)) and len(node) >= 3
            and isinstance(node[0], str) and isinstance(node[1], int)
            and isinstance(node[2], int)):
        return [(node[0], node[1], node[2])] + (
            _refs(node[3]) if len(node) > 3 else [])
    if isinstance(node, dict):
        return [r for v in node.values() for r in _refs(v)]
    if isinstance(node, (list, tuple)):
        return [r for v in node for r in _refs(v)]
    return []


def _plain_call(node) -> bool:
    """True when an inbound node is a plain call on tensors (no kwargs that
    carry tensors)."""
    return (isinstance(node, list) and all(
        isinstance(r, list) and len(r) >= 3 and isinstance(r[0], str)
        and not (len(r) > 3 and _refs(r[3])) for r in node))


def _last_axis(axis, rank: int) -> bool:
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] % rank == rank - 1


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (
        "channels_last", None)


def _mixes_channels(layer) -> bool:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") in _CHANNEL_MIXING


class _Graph:
    """Which channels of which tensor belong to which group, per layer."""

    def __init__(self, model, skip=None):
        check_functional(model, "prune_channels")
        self.model = model
        self.groups = _Groups()
        self.layers: Dict[str, _LayerIO] = {}
        self.tensors: Dict[Tuple[str, int, int], _Desc] = {}
        self.owners: List[Tuple[str, str, _Desc]] = []  # scored layers
        self.skip = skip
        config = model.get_config()
        self.sequential = isinstance(model, keras.Sequential)
        entries = self._entries(config)
        pending = list(entries)
        while pending:
            ready = [e for e in pending if all(r in self.tensors for r in e[1])]
            if not ready:
                raise ValueError(
                    f"prune_channels: cannot order the layers of model "
                    f"{model.name!r} (inputs of {pending[0][0]!r} never "
                    "computed); rebuild it as a plain Functional model")
            for entry in ready:
                self._visit(*entry)
                pending.remove(entry)
        for key in self._output_keys(config):
            for gid, _ in self.tensors[key].segments:
                self.groups.fix(gid, SKIP_OUTPUT)

    # config -> [(layer name, input refs, plain call?)]
    def _entries(self, config) -> list:
        if not self.sequential:
            out = []
            for lc in config["layers"]:
                nodes = lc.get("inbound_nodes") or []
                refs = _refs(nodes)
                plain = len(nodes) == 1 and _plain_call(nodes[0])
                out.append((lc["config"]["name"], refs, plain or not nodes))
            return out
        out, previous = [], None
        for lc in config["layers"]:
            name = lc["config"]["name"]
            if lc["class_name"] == "InputLayer":
                out.append((name, [], True))
            else:
                if previous is None:
                    previous = "__input__"
                    out.append((previous, [], True))
                out.append((name, [(previous, 0, 0)], True))
            previous = name
        return out

    def _output_keys(self, config) -> list:
        if self.sequential:
            last = self.model.layers[-1].name
            return [(last, 0, 0)]
        return [tuple(o) for o in config["output_layers"]]

    def _opaque_output(self, name: str, layer) -> None:
        try:
            outs = tf.nest.flatten(layer.output)
        except (AttributeError, RuntimeError):  # shared layer
            outs = tf.nest.flatten(layer.get_output_at(0))
        for t, tensor in enumerate(outs):
            shape = tensor.shape
            size = int(shape[-1]) if shape.rank and shape[-1] is not None \
                else None
            gid = self.groups.new(size, fixed=(
                f"merged with the output of {name} ({type(layer).__name__})"))
            self.tensors[(name, 0, t)] = _Desc(((gid, size),))

    def _visit(self, name: str, refs: list, plain: bool) -> None:
        if name == "__input__" or (self.sequential and not refs):
            size = self.model.input_shape[-1]
            gid = self.groups.new(size, fixed=SKIP_INPUT)
            self.tensors[(name, 0, 0)] = _Desc(((gid, size),))
            return
        layer = self.model.get_layer(name)
        ins = [self.tensors[r] for r in refs]
        kind, out, why = self._rule(layer, ins, plain)
        if kind == "opaque":
            for desc in ins:
                for gid, _ in desc.segments:
                    self.groups.fix(gid, why or (
                        f"feeds {name} ({type(layer).__name__}), which "
                        "cannot drop channels"))
            self.layers[name] = _LayerIO(kind, ins, None)
            self._opaque_output(name, layer)
            return
        self.layers[name] = _LayerIO(kind, ins, out)
        self.tensors[(name, 0, 0)] = out

    def _rule(self, layer, ins: List[_Desc], plain: bool):
        """``(kind, output desc, reason)`` for one layer."""
        cls = type(layer)
        if isinstance(layer, _L.InputLayer):
            size = layer.output.shape[-1]
            return "input", _Desc(((self.groups.new(size, fixed=SKIP_INPUT),
                                    size),)), ""
        if not plain or len(ins) == 0:
            return "opaque", None, ""
        one = len(ins) == 1 and ins[0].spatial == 1
        if cls in _CONV + (_L.Dense,) and len(ins) == 1 and _channels_last(layer) \
                and getattr(layer, "groups", 1) == 1 \
                and (cls is _L.Dense or ins[0].spatial == 1):
            size = layer.units if cls is _L.Dense else layer.filters
            gid = self.groups.new(size, layer.name)
            if matches(layer, self.skip):
                self.groups.fix(gid, SKIP_USER)
            elif _mixes_channels(layer):
                self.groups.fix(gid, SKIP_SOFTMAX)
            out = _Desc(((gid, size),))
            self.owners.append((layer.name, "producer", out))
            return "producer", out, ""
        if cls in _DEPTHWISE and one and layer.depth_multiplier == 1 \
                and _channels_last(layer):
            self.owners.append((layer.name, "depthwise", ins[0]))
            return "depthwise", ins[0], ""
        if isinstance(layer, _CHANNELWISE) and one:
            rank = len(layer.input_shape)
            if isinstance(layer, _L.BatchNormalization):
                ok = _last_axis(layer.axis, rank)
            else:
                ok = layer.alpha.shape[-1] == ins[0].channels
            return ("channelwise", ins[0], "") if ok else ("opaque", None, "")
        if cls in _PASS and len(ins) == 1 and _channels_last(layer):
            if _mixes_channels(layer):
                return "opaque", None, SKIP_SOFTMAX
            return "pass", ins[0], ""
        if cls in _MERGE:
            return self._merge(ins)
        if cls is _L.Concatenate and all(d.spatial == 1 for d in ins) \
                and _last_axis(layer.axis, len(layer.output_shape)) \
                and all(d.channels is not None for d in ins):
            return "pass", _Desc(sum((d.segments for d in ins), ())), ""
        if cls is _L.Flatten and one and _channels_last(layer):
            spatial = layer.input_shape[1:-1]
            if all(isinstance(s, int) for s in spatial):
                return "pass", _Desc(ins[0].segments, math.prod(spatial)), ""
        return "opaque", None, ""

    def _merge(self, ins: List[_Desc]):
        first = ins[0]
        layout = {tuple(s for _, s in d.segments) for d in ins}
        if any(d.spatial != first.spatial for d in ins) or len(layout) != 1:
            return "opaque", None, SKIP_MISALIGNED
        for d in ins[1:]:
            for (a, _), (b, _) in zip(first.segments, d.segments):
                self.groups.union(a, b)
        return "pass", first, ""

    # -- queries --
    def roots(self) -> List[int]:
        return sorted({self.groups.find(g) for g in range(len(self.groups.parent))
                       if self.groups.producers.get(self.groups.find(g))})

    def prunable(self, root: int) -> bool:
        return bool(self.groups.producers.get(root)) and \
            root not in self.groups.reason

    def indices(self, desc: _Desc, keep: Dict[int, np.ndarray]
                ) -> Optional[np.ndarray]:
        """Kept channel indices of a tensor (``None``: all kept)."""
        parts, offset, changed = [], 0, False
        for gid, size in desc.segments:
            kept = keep.get(self.groups.find(gid))
            if kept is None:
                if size is None:
                    return None
                parts.append(offset + np.arange(size))
            else:
                parts.append(offset + kept)
                changed = True
            offset += size or 0
        if not changed:
            return None
        idx = np.concatenate(parts)
        if desc.spatial > 1:
            idx = (np.arange(desc.spatial)[:, None] * offset + idx[None, :]).ravel()
        return idx


# -- criteria -----------------------------------------------------------------
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
