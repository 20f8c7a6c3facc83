"""The models users really have: nested bases, Conv1D, BatchNorm,
LayerNormalization, TF-op layers, depthwise convs, from fit to a validated
int8 .tflite."""

import glob

import numpy as np
import pytest

import tfcompress as tfc
from converters import convert
from converters.tflite import flatbuffer
from tfcompress import keras
from tfcompress.analysis import stats
from tfcompress.keras2.env import tf
from tfcompress.keras2.nesting import flatten
from conftest import compile_clf


def _fit(model, x, y, epochs=1):
    compile_clf(model)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0,
              callbacks=tfc.callbacks_for(model))
    return model


def _data(rng, shape, n=128, classes=3):
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(int(np.prod(shape)), classes))
    return x, np.argmax(x.reshape(n, -1) @ w, -1)


def _nested():
    keras.utils.set_random_seed(0)
    base = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, use_bias=False, name="base_conv"),
        keras.layers.BatchNormalization(name="base_bn"),
        keras.layers.ReLU(name="base_relu")], name="base")
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Flatten(name="flat")(base(inp))
    out = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inp, out, name="nested")


def test_flatten_inlines_nested_models_with_identical_outputs(rng):
    model = _nested()
    flat = flatten(model)
    assert [l.name for l in flat.layers] == [
        "image", "base_conv", "base_bn", "base_relu", "flat", "head"]
    x = rng.normal(size=(8, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(flat(x), model(x), atol=1e-6)


def test_nested_model_qat_to_validated_int8(rng):
    x, y = _data(rng, (8, 8, 1))
    model = _fit(_nested(), x, y, epochs=2)
    qat = tfc.quantize(model)
    assert any(e.status == "flattened" and e.name == "base"
               for e in qat.compression_report.entries)
    _fit(qat, x, y)
    art = convert(qat, x, target="micro")
    report = art.validate(x, y)
    # Conv+BN+ReLU folded into one CONV_2D: no standalone BN arithmetic
    assert art.info.op_counts() == {"CONV_2D": 1, "FULLY_CONNECTED": 1,
                                    "RESHAPE": 1}
    assert report["validation"]["litert"]["agreement"] >= 0.98
    assert report["validation"]["micro"]["passed"]


def test_nested_model_pruning_reaches_the_base_layers(rng):
    x, y = _data(rng, (8, 8, 1))
    pruned = _fit(tfc.prune(_nested(), 0.5, "constant"), x, y)
    assert "base_conv" in pruned.compression_report.compressed
    rows = {r.layer: r for r in stats.kernel_stats(tfc.strip(pruned))}
    assert rows["base_conv"].sparsity == pytest.approx(0.5, abs=0.02)


def test_conv1d_model_from_fit_to_validated_int8(rng):
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 4), name="signal")
    h = keras.layers.Conv1D(16, 5, activation="relu", name="c1")(inp)
    h = keras.layers.Conv1D(16, 3, activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    out = keras.layers.Dense(3, name="head")(h)
    x, y = _data(rng, (32, 4))
    model = _fit(keras.Model(inp, out), x, y, epochs=2)
    pruned = _fit(tfc.prune(model, 0.5, "constant"), x, y)
    qat = tfc.quantize(tfc.strip(pruned))
    assert {"c1", "c2"} <= set(qat.compression_report.compressed)
    assert qat.qat_scheme == "PQAT"
    _fit(qat, x, y)
    art = convert(qat, x, target="micro")
    report = art.validate(x, y)
    # the plain int8 model the shipped (encoded) one was proven
    # bit-identical to; micro models carry no tensor names, so the two
    # Conv1D kernels are the 4-D weights ([16, 1, 5, 4] and [16, 1, 3, 16])
    plain = flatbuffer.read(art.plain_tflite)
    convs = [r for r in flatbuffer.weight_stats(plain)
             if len(r["shape"]) == 4]
    assert [r["shape"] for r in convs] == [[16, 1, 5, 4], [16, 1, 3, 16]], \
        flatbuffer.weight_stats(plain)
    for r in convs:
        assert r["dtype"] == "int8" and r["sparsity"] >= 0.49, r
    assert report["validation"]["micro"]["passed"]


def test_layernorm_and_tf_op_layers_are_skipped_with_reasons(rng):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, name="fc")(inp)
    h = keras.layers.LayerNormalization(name="norm")(h)
    h = tf.nn.relu(h[:, :8] * 2.0)
    out = keras.layers.Dense(3, name="head")(h)
    x, y = _data(rng, (8,))
    qat = tfc.quantize(_fit(keras.Model(inp, out), x, y))
    skipped = qat.compression_report.skipped
    assert "norm" in skipped and "calibration" in skipped["norm"]
    assert any(name.startswith("tf.") for name in skipped)
    _fit(qat, x, y)
    art = convert(qat, x, target="android")
    report = art.validate(x, y, require=False)
    assert report["validation"]["litert"]["agreement"] >= 0.95


def test_depthwise_conv_pruning_strips_to_a_plain_layer(rng):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 4))
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inp)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    x, y = _data(rng, (8, 8, 4))
    pruned = _fit(tfc.prune(keras.Model(inp, out), 0.5, "constant"), x, y)
    assert "dw" in pruned.compression_report.compressed
    stripped = tfc.strip(pruned)
    layer = stripped.get_layer("dw")
    assert type(layer) is keras.layers.DepthwiseConv2D
    kernel = layer.get_weights()[0]
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)


def test_sparsity_goes_to_tensorboard(rng, tmp_path):
    x, y = _data(rng, (8, 8, 1))
    model = tfc.prune(_nested(), 0.5, "constant")
    compile_clf(model)
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=tfc.callbacks_for(model, log_dir=str(tmp_path)))
    events = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert events
    tags = {}
    for record in tf.data.TFRecordDataset(events):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(
                float(tf.make_ndarray(value.tensor)))
    assert len(tags["sparsity"]) == 2
    assert tags["sparsity"][-1] == pytest.approx(0.5, abs=0.02)
