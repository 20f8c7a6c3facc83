"""Quantization-aware training for Keras 3: ``quantize`` wraps a model.

Layers with kernels get int8 fake-quant weights and outputs
(:class:`~tfcompress.keras3.quantizers.QuantizeWrapper`), merges, average
pooling, LayerNormalization and activations get an int8 output range;
max pooling, reshapes and dropout keep their input's. A BatchNormalization
that follows a conv or Dense is folded into it (its moving statistics into
the kernel and bias) before QAT. When a standalone ReLU follows a layer,
the range is taken after it (as the converter fuses it). Layers this
cannot quantize (LSTM/GRU, other weighted layers) stay float in training
and are listed as skipped with the reason; the converter calibrates them
from the representative data.

``preserve="auto"`` reads each kernel: a pruned one keeps its zeros (PQAT),
a clustered one its values per channel (CQAT), both is PCQAT.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional, Union

import keras
import numpy as np

from tfcompress.keras3 import report as rp
from tfcompress.keras3.base import copy_layer, resolve, rewrite, walk
from tfcompress.keras3.clustering import channels_last
from tfcompress.keras3.quantizers import QuantizeWrapper
from tfcompress.keras3.selection import (RECURRENT, channel_axis,
                                         kernel_names, matches)

L = keras.layers
PRESERVE = ("sparsity", "clusters")
AUTO_SPARSITY = 0.3   # a kernel this sparse is taken as pruned
AUTO_CLUSTERS = 64    # at most this many values per channel: clustered
#: kernels the converter accepts quantized per output channel (Dense and
#: Conv1D fail in it: "mismatched quantized axes" after their reshapes)
PER_CHANNEL = (L.Conv2D,)
OUTPUT_ONLY = (L.Add, L.Subtract, L.Multiply, L.Average, L.Concatenate,
               L.AveragePooling1D, L.AveragePooling2D,
               L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
               L.LayerNormalization, L.Activation, L.ReLU, L.LeakyReLU)
SAME_SCALE = (L.MaxPooling1D, L.MaxPooling2D, L.GlobalMaxPooling1D,
              L.GlobalMaxPooling2D, L.Flatten, L.Reshape, L.Dropout,
              L.Permute, L.ZeroPadding1D, L.ZeroPadding2D, L.Cropping1D,
              L.Cropping2D, L.UpSampling1D, L.UpSampling2D, L.Identity,
              L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianNoise)
FOLDS_BN = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.Dense)
FUSED = ("relu", "relu6")
SCHEME_NAMES = {(): "QAT", ("sparsity",): "PQAT", ("clusters",): "CQAT",
                ("sparsity", "clusters"): "PCQAT"}


@keras.saving.register_keras_serializable("tfcompress")
class FoldedBatchNorm(keras.layers.Layer):
    """Where a BatchNormalization was before it was folded into the layer
    feeding it: the identity (the converter removes it)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _is_activation(layer) -> bool:
    if isinstance(layer, L.ReLU):
        return not layer.negative_slope and layer.threshold == 0
    if isinstance(layer, L.Activation):
        return keras.activations.serialize(layer.activation) in FUSED
    return False


def _consumers(model) -> dict:
    """``{layer name: [names of the layers reading its output]}``."""
    out = {}
    for sub in [model] + [l for l in walk(model) if isinstance(l, keras.Model)]:
        if isinstance(sub, keras.Sequential):
            names = [l.name for l in sub.layers]
            for a, b in zip(names, names[1:]):
                out.setdefault(a, []).append(b)
            continue
        for entry in sub.get_config().get("layers", []):
            text = json.dumps(entry.get("inbound_nodes", []))
            for part in text.split('"keras_history": ["')[1:]:
                out.setdefault(part.split('"')[0], []).append(entry["name"])
    return out


def _plan(model):
    """BatchNormalizations to fold (``{bn: layer}``), and the layers whose
    output range is taken after the activation that follows them."""
    by_name = {l.name: l for l in walk(model)}
    cons = _consumers(model)
    folds = {}
    for name, users in cons.items():
        layer = by_name.get(name)
        if isinstance(layer, FOLDS_BN) and len(users) == 1 and \
                isinstance(by_name.get(users[0]), L.BatchNormalization) and \
                layer.activation in (None, keras.activations.linear) and \
                by_name[users[0]].axis in (-1, len(layer.output.shape) - 1):
            folds[users[0]] = layer
    no_output = set()
    for name, users in cons.items():
        after = name
        if len(users) == 1 and users[0] in folds:
            after = users[0]
        nxt = cons.get(after, [])
        if len(nxt) == 1 and _is_activation(by_name.get(nxt[0])):
            no_output.add(name)
    return folds, no_output


def fold_batchnorm(layer, bn):
    """A copy of ``layer`` (bias on) with ``bn``'s statistics folded in."""
    config = {**layer.get_config(), "use_bias": True}
    new = copy_layer(layer, config)
    kname = kernel_names(layer)[0]
    kernel = keras.ops.convert_to_numpy(resolve(layer, kname).value)
    bias = keras.ops.convert_to_numpy(layer.bias.value) if layer.use_bias \
        else 0.0
    mean = keras.ops.convert_to_numpy(bn.moving_mean.value)
    var = keras.ops.convert_to_numpy(bn.moving_variance.value)
    gamma = keras.ops.convert_to_numpy(bn.gamma.value) if bn.scale else 1.0
    beta = keras.ops.convert_to_numpy(bn.beta.value) if bn.center else 0.0
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(layer, L.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[-2:])
    else:
        kernel = kernel * scale
    resolve(new, kname).assign(kernel.astype(np.float32))
    new.bias.assign(((bias - mean) * scale + beta).astype(np.float32))
    return new


def detect_preserve(layer, names) -> tuple:
    """What a kernel's values say earlier stages made, and the most values
    per channel (``(preserve, clusters)``)."""
    found, most = set(), 0
    for n in names:
        value = keras.ops.convert_to_numpy(resolve(layer, n).value)
        if (value == 0).mean() >= AUTO_SPARSITY:
            found.add("sparsity")
        distinct = nonzero = 0
        for col in channels_last(value, channel_axis(layer, n)).T:
            unique = np.unique(col)
            most = max(most, unique.size)
            distinct += int((unique != 0).sum())
            nonzero += int((col != 0).sum())
        if distinct == nonzero:  # no value shared: trained, not clustered
            most = AUTO_CLUSTERS + 1
    if names and most <= AUTO_CLUSTERS:
        found.add("clusters")
    return tuple(p for p in PRESERVE if p in found), most


def _preserve_arg(preserve) -> Optional[tuple]:
    if preserve == "auto":
        return None
    if preserve in ("none", None):
        return ()
    preserve = (preserve,) if isinstance(preserve, str) else tuple(preserve)
    unknown = set(preserve) - set(PRESERVE)
    if unknown:
        raise ValueError(f"quantize: unknown preserve {sorted(unknown)}; "
                         f"valid: {list(PRESERVE)}.")
    return tuple(p for p in PRESERVE if p in preserve)


def quantize(model, *, preserve: Union[str, Iterable[str]] = "auto",
             layers: Optional[Iterable] = None,
             skip: Optional[Iterable] = None,
             report: Optional[rp.CompressionReport] = None,
             weight_bits: int = 8, **unused):
    """Wrap a Keras 3 ``model`` for int8 quantization-aware training.

    Args:
        model: a Sequential or Functional Keras 3 model, plain or stripped
            after pruning/clustering (``tfcompress.strip``).
        preserve: ``"auto"`` (read from each kernel), ``"none"``, or any of
            ``("sparsity", "clusters")``: PQAT, CQAT, PCQAT.
        layers: quantize only these layers; others stay float in training
            and are calibrated by the converter.
        skip: layers never to quantize.
        report: a :class:`CompressionReport` to append to.
        weight_bits: 8 (lower bit widths are Keras 2 only).

    Returns:
        The QAT model (convert it as it is: the converter reads its
        ranges); ``model.qat_scheme`` names the scheme.

    Example:
        >>> qat = quantize(tfcompress.strip(pruned))   # PQAT, auto-detected
        >>> qat.fit(x, y, callbacks=tfcompress.callbacks_for(qat))
    """
    if weight_bits != 8:
        raise ValueError(f"quantize: weight_bits={weight_bits} is supported "
                         "for tf_keras models only; Keras 3 QAT is int8.")
    fixed = _preserve_arg(preserve)
    from tfcompress.keras3.base import check_model
    check_model(model, "quantize")
    folds, no_output = _plan(model)
    by_name = {l.name: l for l in walk(model)}
    folded_into = {conv.name: by_name[bn] for bn, conv in folds.items()}
    report = report if report is not None else rp.CompressionReport()
    used = set()

    def decide(layer):
        name = layer.name
        if matches(layer, skip) or (layers is not None and
                                    not matches(layer, layers)):
            return layer, rp.SKIP_USER
        if name in folds:
            report.add(layer, "quantize", "folded",
                       f"folded into {folds[name].name}")
            return FoldedBatchNorm(name=name), ""
        if isinstance(layer, keras.Model):
            return layer, rp.SKIP_NESTED
        if isinstance(layer, RECURRENT):
            return layer, rp.SKIP_RECURRENT
        if isinstance(layer, SAME_SCALE) or not (
                layer.weights or isinstance(layer, OUTPUT_ONLY)):
            return layer, ""
        if name in folded_into:
            layer = fold_batchnorm(layer, folded_into[name])
        names = kernel_names(layer)
        if isinstance(layer, OUTPUT_ONLY) and not isinstance(
                layer, L.LayerNormalization):
            names = []
        elif not names and not isinstance(layer, L.LayerNormalization):
            return layer, (f"{rp.SKIP_NO_SUPPORT}: float in training, int8 "
                           "by the converter's calibration")
        keep, clusters = detect_preserve(layer, names) if fixed is None \
            else (fixed, 0)
        if "clusters" in keep and not clusters:
            clusters = detect_preserve(layer, names)[1]
            if not clusters or clusters > AUTO_CLUSTERS:
                keep = tuple(p for p in keep if p != "clusters")
        used.update(keep)
        return QuantizeWrapper(
            layer, names,
            per_channel=names if isinstance(layer, PER_CHANNEL) else (),
            quantize_output=name not in no_output and
            not isinstance(layer, L.Embedding),
            preserve=keep, clusters=clusters, name=name), None

    qat, report = rewrite(model, decide, "quantize", report)
    qat.qat_scheme = SCHEME_NAMES[tuple(p for p in PRESERVE if p in used)]
    return qat


def is_quantize_layer(layer) -> bool:
    return isinstance(layer, QuantizeWrapper)
