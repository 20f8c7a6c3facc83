"""The cheaper activation quantizer computes what tfmot's computes."""

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress.keras2 import fakequant
from tfcompress.keras2.env import tf
from tfcompress import keras
from conftest import compile_clf, small_cnn

from tensorflow_model_optimization.python.core.quantization.keras import (
    quantizers)


def _ranges(rng):
    """(min, max) pairs as tfmot's moving averages produce them, and the
    degenerate ones: both zero, max zero, max tiny, 0 nudged to the top."""
    pairs = [(0.0, 0.0), (-0.0, 0.0), (-1.5, 0.0), (-3.79, 0.00097),
             (-6.0, 6.0), (-1e-3, 2e-3), (-0.5, 1e-31), (-2.0, 7.5)]
    pairs += [(-abs(rng.normal()) * s, abs(rng.normal()) * s)
              for s in (1e-3, 1.0, 6.0) for _ in range(10)]
    return [(np.float32(a), np.float32(b)) for a, b in pairs]


def test_gradient_is_the_kernels_own_mask_at_the_range_edges():
    """Values and input gradients equal TensorFlow's fake-quant op, also
    exactly at the nudged ends of the range and the floats next to them,
    in a graph (where Grappler rewrites arithmetic) and eagerly."""
    rng = np.random.default_rng(0)
    lv, hv = tf.Variable(0.0), tf.Variable(0.0)

    def both(x, dy, act=None):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            h = act(x) if act else x   # the ReLU's gradient fused, too
            ref = tf.quantization.fake_quant_with_min_max_vars(h, lv, hv)
            got = fakequant.fake_quant(
                h, lv.read_value(), hv.read_value())
        return (ref, got, tape.gradient(ref, x, output_gradients=dy),
                tape.gradient(got, x, output_gradients=dy))
    graph = tf.function(both)
    graphs = [lambda x, dy, a=act: graph(x, dy, a)
              for act in (tf.nn.relu, tf.nn.relu6)]
    for low, high in _ranges(rng):
        lo, hi = [t.numpy() for t in fakequant.nudged_range(low, high)]
        x = rng.normal(size=500).astype(np.float32) * max(
            float(high - low), 1e-3) * 1.5
        up, down = np.float32(np.inf), np.float32(-np.inf)
        edges = [0.0, hi, np.nextafter(hi, up), np.nextafter(hi, down),
                 lo, np.nextafter(lo, up), np.nextafter(lo, down), -0.0,
                 6.0, np.nextafter(np.float32(6), down), 1e-40, -1e-40]
        x[:12] = np.nan_to_num(edges)
        x[250:] = np.abs(x[250:])   # and a ReLU's output
        x, dy = tf.constant(x), tf.constant(rng.normal(size=500), tf.float32)
        lv.assign(low)
        hv.assign(high)
        for fn in [both, graph] + graphs:
            ref, got, dref, dgot = fn(x, dy)
            np.testing.assert_array_equal(got.numpy(), ref.numpy())
            np.testing.assert_array_equal(dgot.numpy(), dref.numpy(),
                                          err_msg=f"range {low}, {high}")


@pytest.mark.parametrize("after", ["relu", "relu6", "linear"])
def test_training_steps_match_tfmots_quantizer(after):
    """Outputs, input gradients and the moving-average ranges after
    several training steps are tfmot's, bit for bit."""
    act = {"relu": tf.nn.relu, "relu6": tf.nn.relu6,
           "linear": lambda v: v * 1.0}[after]
    runs = []
    for cls in (quantizers.MovingAverageQuantizer,
                fakequant.FastMovingAverageQuantizer):
        rng = np.random.default_rng(3)
        quantizer = cls(8, False, False, False)
        weights = {"min_var": tf.Variable(-6.0), "max_var": tf.Variable(6.0)}

        @tf.function
        def step(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = quantizer(act(x), True, weights)
            return y, tape.gradient(y, x, output_gradients=dy)
        got = []
        for scale in (3.0, 3.0, 0.5, 20.0, 1.0):
            x = tf.constant(rng.normal(size=(4, 6, 6, 3)) * scale, tf.float32)
            dy = tf.constant(rng.normal(size=(4, 6, 6, 3)), tf.float32)
            got += [v.numpy() for v in step(x, dy)]
            got += [weights["min_var"].numpy(), weights["max_var"].numpy()]
        runs.append(got)
    for ref, fast in zip(*runs):
        np.testing.assert_array_equal(fast, ref)


def _trained_qat(data, fast: bool):
    x, y = data
    qat = tfc.quantize(small_cnn())
    if not fast:  # back to tfmot's own quantizer
        for q in fakequant._activation_quantizers(qat):
            q.__class__ = quantizers.MovingAverageQuantizer
    keras.utils.set_random_seed(0)
    compile_clf(qat).fit(x[:128], y[:128], epochs=1, batch_size=32,
                         shuffle=False, verbose=0)
    return qat


def test_quantize_trains_as_with_tfmots_quantizer(clf_data):
    """``quantize`` switches the activations' quantizers; an epoch gives
    the same weights and ranges as with tfmot's quantizers."""
    fast = _trained_qat(clf_data, True)
    switched = [q for q in fakequant._activation_quantizers(fast)
                if isinstance(q, fakequant.FastMovingAverageQuantizer)]
    assert len(switched) == 3 and fakequant.speed_up(fast) == 0
    ref = _trained_qat(clf_data, False)
    names = [w.name for w in ref.weights]
    assert any("post_activation_max" in n for n in names)
    for name, a, b in zip(names, ref.get_weights(), fast.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7, err_msg=name)
