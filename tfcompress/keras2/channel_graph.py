"""The channel graph of a Keras model: which filters are cut together.

Channel pruning (:mod:`tfcompress.keras2.channel_pruning`) removes filters of
``Conv``/``Dense`` layers and the matching input channels of every reader.
This module follows channels through the layer graph: per-channel layers
(``BatchNormalization``, ``DepthwiseConv2D``, ``PReLU``) and element-wise /
pooling / padding layers pass them through; ``Add``/``Multiply``/... tie their
inputs' channels into one *group*; ``Concatenate`` (last axis) stacks groups;
``Flatten`` repeats channels per position; a channel that reaches a model
output, a ``Reshape``, a softmax, a shared or an unknown layer is kept, with
the reason (the ``SKIP_*`` constants).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfcompress.keras2.env import keras, tf
from tfcompress.keras2.nesting import check_functional
from tfcompress.keras2.selection import SKIP_USER, matches

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
