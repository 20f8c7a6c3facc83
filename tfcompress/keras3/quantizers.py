"""Fake-quant for Keras 3 QAT: the wrapper that quantizes a layer.

Weights: symmetric int8 (narrow range) from their current range, per output
channel where the TFLite converter accepts it (conv kernels) and per tensor
elsewhere (a per-channel Dense kernel fails in the converter). Outputs:
asymmetric int8 from an exponential moving average of the batch ranges,
after the layer's own activation. Both go through
``keras.quantizers.fake_quant_with_min_max_vars``, which on the TensorFlow
backend is ``tf.quantization.fake_quant_with_min_max_vars*``: the converter
reads the ranges from it. ``preserve`` keeps what pruning (zeros) and
clustering (shared values per channel) made while the weights train.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from tfcompress.keras3.base import WeightWrapper, read, resolve
from tfcompress.keras3.clustering import (channels_last, from_rows,
                                          gather_rows, to_rows)
from tfcompress.keras3.selection import channel_axis

EMA_DECAY = 0.99
fake_quant = keras.quantizers.fake_quant_with_min_max_vars


def quantize_weight(value, axis=None):
    """Symmetric narrow-range int8 fake-quant (per channel along ``axis``)."""
    magnitude = ops.abs(ops.stop_gradient(value))  # a range, not trained
    if axis is None:
        top = ops.maximum(ops.max(magnitude), 1e-6)
    else:
        axis = axis % len(value.shape)
        other = tuple(i for i in range(len(value.shape)) if i != axis)
        top = ops.maximum(ops.max(magnitude, axis=other), 1e-6)
    return fake_quant(value, -top, top, num_bits=8, narrow_range=True,
                      axis=axis)


def _plain_layer_norm(layer) -> bool:
    """A LayerNormalization over the last axis only, not RMS."""
    if not isinstance(layer, keras.layers.LayerNormalization) or \
            getattr(layer, "rms_scaling", False):
        return False
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) \
        else [layer.axis]
    shape = (layer.get_build_config() or {}).get("input_shape")
    last = [len(shape) - 1] if shape else [-1]
    return list(axes) in ([-1], last)


def layer_norm(layer, x):
    """LayerNormalization over the last axis in ops that all have int8
    TFLite kernels (Keras' own lowering negates the mean in float)."""
    mean = ops.mean(x, axis=-1, keepdims=True)
    centered = x - mean
    var = ops.mean(centered * centered, axis=-1, keepdims=True)
    y = centered * ops.rsqrt(var + layer.epsilon)
    if layer.scale:
        y = y * layer.gamma
    if layer.center:
        y = y + layer.beta
    return y


@keras.saving.register_keras_serializable("tfcompress")
class QuantizeWrapper(WeightWrapper):
    """Int8 fake-quant of ``layer``'s weights and output.

    Args:
        layer: the layer (built, trained).
        weight_names: weights to fake-quantize.
        per_channel: the subset quantized per output channel.
        quantize_output: fake-quantize the output (off when an activation
            layer follows: the range is taken after it).
        preserve: ``"sparsity"`` (zeros stay zero) and/or ``"clusters"``
            (weights are ``clusters`` trainable values per channel, the
            assignment fixed).
        clusters: values per channel kept with ``"clusters"``.
    """

    def __init__(self, layer, weight_names: Sequence[str] = (),
                 per_channel: Sequence[str] = (), quantize_output: bool = True,
                 preserve: Sequence[str] = (), clusters: int = 0, **kwargs):
        super().__init__(layer, weight_names, **kwargs)
        self.per_channel = list(per_channel)
        self.quantize_output = bool(quantize_output)
        self.preserve = list(preserve)
        self.clusters = int(clusters)

    def build_state(self):
        self.masks, self.centroids, self.indices = {}, {}, {}
        if self.quantize_output:
            self.out_min = self.add_weight(
                name="output_min", shape=(), trainable=False,
                initializer=keras.initializers.Constant(-6.0))
            self.out_max = self.add_weight(
                name="output_max", shape=(), trainable=False,
                initializer=keras.initializers.Constant(6.0))
            self.out_seen = self.add_weight(
                name="output_seen", shape=(), trainable=False,
                initializer="zeros")
        for n in self.weight_names:
            var = resolve(self.layer, n)
            key = n.replace(".", "_")
            shape = tuple(var.shape)
            if "sparsity" in self.preserve:
                self.masks[n] = self.add_weight(
                    name=key + "_mask", shape=shape, trainable=False,
                    initializer="ones")
            if "clusters" in self.preserve:
                var.trainable = False  # the centroids train instead
                self.centroids[n] = self.add_weight(
                    name=key + "_centroids", initializer="zeros",
                    shape=(shape[channel_axis(self.layer, n)], self.clusters))
                self.indices[n] = self.add_weight(
                    name=key + "_indices", shape=shape, dtype="int32",
                    trainable=False, initializer="zeros")

    def baked(self) -> "QuantizeWrapper":
        """The same QAT layer with the preserved weights written into the
        layer's own (the form the converter folds into int8 constants)."""
        from tfcompress.keras3.base import copy_layer
        inner = copy_layer(self.layer)
        for n in self.weight_names:
            var = resolve(inner, n)
            var.trainable = True
            var.assign(ops.convert_to_numpy(self.preserved(
                n, read(resolve(self.layer, n)))))
        new = QuantizeWrapper(inner, self.weight_names, self.per_channel,
                              self.quantize_output, name=self.name)
        if self.quantize_output:
            new._ranges = [ops.convert_to_numpy(v.value) for v in
                           (self.out_min, self.out_max, self.out_seen)]
        return new

    def initialize(self):
        ranges = getattr(self, "_ranges", None)
        if ranges is not None:
            for var, value in zip((self.out_min, self.out_max,
                                   self.out_seen), ranges):
                var.assign(value)
            return
        for n in self.weight_names:
            value = ops.convert_to_numpy(resolve(self.layer, n).value)
            if n in self.masks:
                self.masks[n].assign((value != 0).astype(np.float32))
            if n in self.centroids:
                axis = channel_axis(self.layer, n)
                cols = channels_last(value, axis).T
                cents = np.zeros((len(cols), self.clusters), np.float32)
                index = np.zeros_like(channels_last(value, axis), np.int32)
                for c, col in enumerate(cols):
                    uniq = np.unique(col)[:self.clusters]
                    cents[c] = np.resize(uniq, self.clusters)
                    index[:, c] = np.clip(np.searchsorted(uniq, col), 0,
                                          len(uniq) - 1)
                moved = np.moveaxis(value, axis, -1).shape
                index = np.moveaxis(index.reshape(moved), -1, axis)
                self.centroids[n].assign(cents)
                self.indices[n].assign(index)

    def preserved(self, name, value):
        """The weight as the earlier stages left it (clusters, zeros)."""
        if name in self.centroids:
            axis = channel_axis(self.layer, name)
            rows = gather_rows(read(self.centroids[name]),
                               to_rows(read(self.indices[name]), axis))
            value = from_rows(rows, tuple(value.shape), axis)
        if name in self.masks:
            value = value * read(self.masks[name])
        return value

    def transform(self, name, value, training):
        value = self.preserved(name, value)
        axis = channel_axis(self.layer, name) \
            if name in self.per_channel else None
        return quantize_weight(value, axis)

    def run_layer(self, *args, **kwargs):
        if _plain_layer_norm(self.layer):
            return layer_norm(self.layer, args[0])
        return super().run_layer(*args, **kwargs)

    def output(self, outputs, training):
        if not self.quantize_output or isinstance(outputs, (list, tuple)):
            return outputs
        low, high = read(self.out_min), read(self.out_max)
        if training:  # the range follows the batches; no gradient to it
            batch = ops.stop_gradient(outputs)
            batch_low = ops.cast(ops.min(batch), low.dtype)
            batch_high = ops.cast(ops.max(batch), high.dtype)
            decay = EMA_DECAY * read(self.out_seen)  # 0 on the first batch
            low = decay * low + (1 - decay) * batch_low
            high = decay * high + (1 - decay) * batch_high
            self.out_min.assign(low)
            self.out_max.assign(high)
            self.out_seen.assign(ops.ones_like(read(self.out_seen)))
        low = ops.minimum(low, 0.0)
        high = ops.maximum(high, low + 1e-6)
        return fake_quant(outputs, low, ops.maximum(high, 0.0), num_bits=8)

    def get_config(self):
        return {**super().get_config(), "per_channel": self.per_channel,
                "quantize_output": self.quantize_output,
                "preserve": self.preserve, "clusters": self.clusters}
