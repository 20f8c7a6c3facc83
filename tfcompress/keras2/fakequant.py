"""Cheaper training steps for tfmot's moving-average activation quantizer.

tfmot's ``MovingAverageQuantizer`` (on every activation of a QAT model)
costs, per training step and activation: the batch min and max (a pass each),
``FakeQuantWithMinMaxVars`` and its gradient op, which besides the input
gradient reduces the gradients below and above the range into gradients for
``min`` and ``max`` (two more passes, for variables that are not trainable).

:class:`FastMovingAverageQuantizer` computes the same outputs, input
gradients and ranges with less work:

- the input gradient is the op's own mask (``nudged_min <= x <=
  nudged_max``, TensorFlow's nudging of the range reproduced exactly)
  applied by ``QuantizeAndDequantizeV4Grad``: one pass, no reductions;
- after a ReLU (or ReLU6) the input is never negative, so ``min(batch_min,
  0)`` is 0 without a pass over the batch, and the same masked pass gives
  the gradient of the ReLU's input (the ReLU's gradient op drops out).

Profiled on a DS-CNN step, tfmot's quantizers were 30% of the step (the
gradient op alone 17%), these 19%.

:func:`speed_up` switches the activation quantizers of a QAT model to it in
place (inference, per-axis and symmetric quantizers keep tfmot's code).
Saved models keep tfmot's class: quantizers are rebuilt from the quantize
configs, which do not change.
"""

from __future__ import annotations

import numpy as np

from tfcompress.keras2.env import tf

from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_wrapper, quantizers)

#: graph ops whose outputs are never negative.
NONNEGATIVE_OPS = ("Relu", "Relu6")
EMA_DECAY = 0.999  # tfmot's MovingAverageQuantizer


def nudged_range(low, high, num_bits: int = 8, narrow_range: bool = False):
    """``(nudged_min, nudged_max)``: TensorFlow's ``Nudge`` of the fake-quant
    kernels, in float32 graph ops (the range moved so that 0 is exactly
    representable; the same float operations, so the same values)."""
    quant_min = np.float32(1 if narrow_range else 0)
    quant_max = np.float32((1 << num_bits) - 1)
    # DivNoNan: Grappler turns a division by a constant into a multiplication
    # by its reciprocal, which can round differently from the kernel
    scale = tf.math.divide_no_nan(high - low, quant_max - quant_min)
    from_min = quant_min - low / scale
    whole = tf.floor(from_min)   # std::round: halves away from zero
    rounded = whole + tf.cast(from_min - whole >= 0.5, tf.float32)
    zero_point = tf.where(from_min < quant_min, quant_min,
                          tf.where(from_min > quant_max, quant_max, rounded))
    return (quant_min - zero_point) * scale, (quant_max - zero_point) * scale


#: the smallest normal float32: ``x >= _SMALLEST`` is the ``x > 0`` of
#: ``ReluGrad`` (subnormals count as 0 in TensorFlow's CPU kernels)
_SMALLEST = np.float32(np.finfo(np.float32).tiny)
_BELOW_SIX = np.nextafter(np.float32(6), np.float32(0))   # Relu6Grad: x < 6


@tf.autograph.experimental.do_not_convert
def fake_quant(inputs, low, high, num_bits: int = 8,
               narrow_range: bool = False):
    """``tf.quantization.fake_quant_with_min_max_vars`` with only the input
    gradient: the op's own mask ``nudged_min <= x <= nudged_max`` applied by
    ``QuantizeAndDequantizeV4Grad`` (one pass, no reductions) to the
    nudged range, instead of the op's gradient, which also reduces the
    gradients outside the range into gradients for ``low`` and ``high``.

    When ``inputs`` is a ``Relu``/``Relu6`` output in a graph, the gradient
    is taken for the ReLU's input in the same pass: for ``x >= 0 >=
    nudged_min`` the two masks together are ``0 < x <= nudged_max`` (and
    ``x < 6``), so the ReLU's own gradient op is not needed. Python control
    flow only (not converted by AutoGraph, which tfmot's callers apply).
    """
    relu = _relu_type(inputs)
    source = inputs.op.inputs[0] if relu else inputs

    @tf.custom_gradient
    def _quantize(unused_source):
        out = tf.quantization.fake_quant_with_min_max_vars(
            inputs, low, high, num_bits=num_bits, narrow_range=narrow_range)

        def grad(upstream):
            lo, hi = nudged_range(low, high, num_bits, narrow_range)
            # the kernels pass every gradient when both ends are 0
            both_zero = tf.logical_and(tf.equal(low, 0.0), tf.equal(high, 0.0))
            if relu:
                lo = tf.where(lo > _SMALLEST, lo, _SMALLEST)  # NaN: 0 and 0
                hi = tf.where(both_zero, np.float32(np.inf), hi)
                if relu == "Relu6":
                    hi = tf.minimum(hi, _BELOW_SIX)
                return _masked(upstream, inputs, lo, hi)
            return tf.cond(both_zero, lambda: tf.identity(upstream),
                           lambda: _masked(upstream, inputs, lo, hi))
        return out, grad
    return _quantize(source)


def _masked(gradients, x, lo, hi):
    """``gradients * (lo <= x <= hi)`` in one kernel."""
    return tf.raw_ops.QuantizeAndDequantizeV4Grad(
        gradients=gradients, input=x, input_min=lo, input_max=hi)[0]


def _relu_type(inputs):
    if tf.executing_eagerly():
        return None
    kind = getattr(getattr(inputs, "op", None), "type", None)
    return kind if kind in NONNEGATIVE_OPS else None


class FastMovingAverageQuantizer(quantizers.MovingAverageQuantizer):
    """tfmot's ``MovingAverageQuantizer`` (same ranges, outputs and input
    gradients) with the cheaper training step described above."""

    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, training, weights, **kwargs):
        if training is not True or self.per_axis or self.symmetric:
            return super().__call__(inputs, training, weights, **kwargs)
        with tf.name_scope("MovingAvgQuantize"):
            if _relu_type(inputs):   # min(batch min, 0) is 0: no pass
                range_min = tf.constant(0.0)
            else:
                range_min = tf.minimum(
                    tf.math.reduce_min(inputs, name="BatchMin"), 0.0)
            range_max = tf.maximum(
                tf.math.reduce_max(inputs, name="BatchMax"), 0.0)
            low = tf.__internal__.train.assign_moving_average(
                weights["min_var"], range_min, EMA_DECAY, zero_debias=False,
                name="AssignMinEma")
            high = tf.__internal__.train.assign_moving_average(
                weights["max_var"], range_max, EMA_DECAY, zero_debias=False,
                name="AssignMaxEma")
            return fake_quant(inputs, low, high, self.num_bits,
                              self.narrow_range)


def _activation_quantizers(model):
    for layer in model.layers:
        if not isinstance(layer, quantize_wrapper.QuantizeWrapper):
            continue
        yield from getattr(layer, "_output_quantizers", None) or ()
        for act in getattr(layer, "_quantize_activations", None) or ():
            yield act.quantizer


def speed_up(model) -> int:
    """Switch ``model``'s activation quantizers that are tfmot's
    ``MovingAverageQuantizer`` to :class:`FastMovingAverageQuantizer`, in
    place; returns how many were switched."""
    count = 0
    for quantizer in _activation_quantizers(model):
        if type(quantizer) is quantizers.MovingAverageQuantizer:
            quantizer.__class__ = FastMovingAverageQuantizer
            count += 1
    return count
