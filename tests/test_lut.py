"""TFLM LUT compression of clustered weights: smaller, and bit-exact in TFLM."""

import numpy as np
import pytest

from converters.tflite import flatbuffer
from converters.encodings import lut
from converters.targets import micro
from converters.runtimes import tflm
from tfcompress.keras2.env import keras, tf


def _model(clusters, seed=5):
    """Dense 128 -> 64 (relu) -> 32 whose kernels hold ``clusters`` values
    (``None``: left as initialized). fc1's output channels get different
    positive centroids: its int8 values differ from channel to channel."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Input((128,)),
                              keras.layers.Dense(64, activation="relu", name="fc1"),
                              keras.layers.Dense(32, name="fc2")])
    rng = np.random.default_rng(seed)
    if clusters:
        centroids = np.linspace(-0.3, 0.3, clusters).astype(np.float32)
        for layer in model.layers:
            kernel, bias = layer.get_weights()
            kernel = centroids[rng.integers(0, clusters, kernel.shape)]
            if layer.name == "fc1":  # shrink each column's positive side
                f = np.linspace(0.5, 1.0, kernel.shape[1], dtype=np.float32)
                kernel = np.where(kernel > 0, kernel * f, kernel)
            layer.set_weights([kernel, bias])
    return model


def _convert(model, per_channel=True):
    x = np.random.default_rng(6).normal(size=(64, 128)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv._experimental_disable_per_channel = not per_channel
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def clustered():
    return _convert(_model(16))


def test_compressed_model_is_smaller_and_bit_exact_in_tflm(clustered):
    small, stats = lut.compress_clustered(clustered, max_bits=4)
    assert small is not None
    assert stats["tensors_compressed"] == 2
    assert sorted(stats["bits"].values()) == [4, 4]
    assert {t["layer"] for t in stats["tensors"]} == {"fc1", "fc2"}
    # LUT layout follows the per-channel quantization of the kernels
    assert all(t["mode"] == "per-channel" and t["axis"] == 0 and
               t["unique"] <= 16 for t in stats["tensors"])
    assert stats["bytes_after"] == len(small) < stats["bytes_before"] == len(clustered)
    # constant data shrinks exactly as planned (4-bit indices + tables)...
    planned = sum(t["bytes_before"] - t["bytes_after"] for t in stats["tensors"])
    assert planned > 3000
    assert stats["weight_bytes_before"] - stats["weight_bytes_after"] == planned
    # ...the file a little less (flatbuffer padding, DECODE ops, tensors)
    assert stats["saved_bytes"] > 1500
    # decoded weights live in the arena while used: RAM grows
    assert stats["arena_after"] > stats["arena_before"]

    info = flatbuffer.read(small)
    assert info.op_counts()["TFLM_DECODE"] == 2
    micro.check_compatible(small)
    assert micro.resolver_methods(info) == ["AddDecode", "AddFullyConnected"]

    x = np.random.default_rng(7).integers(-128, 128, (40, 128)).astype(np.int8)
    want = tflm.run(clustered, x, arena_size=stats["arena_before"] + 1024)[0]
    got = tflm.run(small, x, arena_size=stats["arena_after"] + 1024)[0]
    assert want.shape == (40, 32) and np.unique(want).size > 5
    np.testing.assert_array_equal(got, want)


def test_per_tensor_quantized_kernel_gets_one_table():
    tflite = _convert(_model(16), per_channel=False)
    small, stats = lut.compress_clustered(tflite)
    # fc2: 16 values in one table; fc1's columns differ, so the whole tensor
    # holds more than 16 int8 values and is skipped
    assert [(t["layer"], t["mode"], t["bits"]) for t in stats["tensors"]] == [
        ("fc2", "per-tensor", 4)]
    assert [s["layer"] for s in stats["skipped"]] == ["fc1"]
    assert stats["bytes_after"] == len(small) < len(tflite)
    x = np.random.default_rng(8).integers(-128, 128, (20, 128)).astype(np.int8)
    want = tflm.run(tflite, x, arena_size=stats["arena_before"])[0]
    got = tflm.run(small, x, arena_size=stats["arena_after"])[0]
    np.testing.assert_array_equal(got, want)


def test_no_file_saving_returns_none():
    tiny = keras.Sequential([keras.layers.Input((128,)),
                             keras.layers.Dense(2, name="fc")])
    tiny.layers[0].set_weights([np.tile(np.float32([[-1, 1]]), (128, 1)),
                                np.zeros(2, np.float32)])
    small, stats = lut.compress_clustered(_convert(tiny), min_saving=0,
                                          verify=False)
    assert [t["bits"] for t in stats["tensors"]] == [1]  # qualifies...
    assert small is None and "not smaller" in stats["reason"]  # ...but no gain


def test_unclustered_model_is_left_alone():
    tflite = _convert(_model(None))
    small, stats = lut.compress_clustered(tflite, verify=False)
    assert small is None and stats["tensors_compressed"] == 0
    assert stats["bytes_after"] == stats["bytes_before"] == len(tflite)
    reasons = {s["layer"]: s["reason"] for s in stats["skipped"]}
    assert set(reasons) == {"fc1", "fc2"}
    assert all(r.startswith(lut.SKIP_UNIQUE) for r in reasons.values())


@pytest.mark.parametrize("clusters, bits", [(2, 1), (4, 2), (8, 3), (16, 4)])
def test_index_width_follows_cluster_count(clusters, bits):
    info = flatbuffer.read(_convert(_model(clusters)))
    chosen, _ = lut.plan(info, max_bits=4, min_saving=0)
    assert [c["bits"] for c in chosen] == [bits, bits]
    assert all(c["unique"] <= clusters for c in chosen)


def test_max_bits_limits_what_qualifies(clustered):
    chosen, skipped = lut.plan(flatbuffer.read(clustered), max_bits=3)
    assert chosen == [] and len(skipped) == 2
    with pytest.raises(ValueError, match="max_bits"):
        lut.plan(flatbuffer.read(clustered), max_bits=9)
