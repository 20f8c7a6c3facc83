"""Task-aware validation of real converted models, in LiteRT and TFLM:
a 640-value autoencoder, a streaming model with resource-variable state and
uint8 output, a segmentation net, a low-margin classifier, a constant model
and a two-output model."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters import convert
from converters.loading.kerasenv import keras, tf
from tfcompress.cli import main


def _seeded():
    keras.utils.set_random_seed(0)
    return np.random.default_rng(0)


def _autoencoder(path):
    """640 values in, 640 out (a 20x32 patch), dense inside. The output
    comes through a RESHAPE, which copies bytes without requantizing."""
    rng = _seeded()
    basis = rng.normal(size=(8, 640)).astype(np.float32) / 3
    x = np.tanh(rng.normal(size=(400, 8)).astype(np.float32) @ basis)
    x = x.reshape(-1, 20, 32)
    inp = keras.Input((20, 32), name="patch")
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(32, activation="relu")(h)
    h = keras.layers.Dense(640)(h)
    model = keras.Model(inp, keras.layers.Reshape((20, 32), name="recon")(h))
    model.compile("adam", "mse")
    model.fit(x, x, epochs=6, batch_size=64, verbose=0)
    model.save(path)
    return x[:160]


def _scale_output(src, dst, factor):
    """Multiply the quantization scale of the model's output by ``factor``."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    with open(src, "rb") as f:
        model = fbu.convert_bytearray_to_object(bytearray(f.read()))
    graph = model.subgraphs[0]
    q = graph.tensors[graph.outputs[0]].quantization
    q.scale = [s * factor for s in q.scale]
    with open(dst, "wb") as f:
        f.write(bytes(fbu.convert_object_to_bytearray(model)))


def test_autoencoder_micro_reconstruction_verdict_and_scaled_output_fails(
        tmp_path):
    ae = str(tmp_path / "ae.h5")
    x = _autoencoder(ae)
    np.savez(tmp_path / "d.npz", x=x)
    np.savez(tmp_path / "xy.npz", x=x, y=x)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["convert", ae, "--data", str(tmp_path / "d.npz"),
                               "--target", "micro", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    lite = report["validation"]["litert"]["outputs"]["recon"]
    assert lite["task"] == "reconstruction"
    assert lite["metric"] == "relative_error" and lite["passed"]
    assert lite["value"] < 0.02 and lite["threshold"] == 0.05
    tflm = report["validation"]["micro"]["outputs"]["recon"]
    assert tflm["against"] == "LiteRT" and tflm["passed"]
    assert "relative_error" in (out / "report.md").read_text()

    model = str(out / "model.tflite")
    args = ["--data", str(tmp_path / "xy.npz"), "--reference", ae]
    res = runner.invoke(main, ["validate", model, *args])
    assert res.exit_code == 0, res.output  # the real model passes vs y
    assert "mae_growth" in res.output
    scaled = str(tmp_path / "scaled.tflite")
    _scale_output(model, scaled, 4.0)
    res = runner.invoke(main, ["validate", scaled, *args])
    assert res.exit_code == 1
    assert "output recon: mae_growth" in res.output
    res = runner.invoke(main, ["validate", scaled, "--data",
                               str(tmp_path / "xy.npz")])
    assert res.exit_code == 1 and "output_0: r2" in res.output


class _Streamer(tf.Module):
    """Keeps the last three frames in a resource variable (batch 1); the
    class scores depend on all three."""

    def __init__(self):
        rng = np.random.default_rng(3)
        self.state = tf.Variable(tf.zeros([1, 3, 8]), trainable=False)
        self.w = tf.constant(rng.normal(size=(24, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def __call__(self, frame):
        new = tf.concat([self.state[:, 1:], frame[:, None]], axis=1)
        self.state.assign(new)
        return tf.nn.softmax(tf.reshape(new, [1, 24]) @ self.w * 0.5)


def _streaming_tflite(quantize=True):
    module = _Streamer()
    fn = module.__call__.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    conv.experimental_enable_resource_variables = True
    if not quantize:
        return conv.convert()
    rng = np.random.default_rng(4)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [rng.normal(size=(1, 8)).astype(np.float32)] for _ in range(64))
    conv._experimental_variable_quantization = True
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.uint8
    return conv.convert()


def test_streaming_resource_variable_model_validates_on_micro(tmp_path):
    from converters.runtimes import litert, tflm
    from converters.runtimes.feeds import Feeds
    from converters.tflite import flatbuffer
    tflite = _streaming_tflite()
    info = flatbuffer.read(tflite)
    assert info.subgraphs == 2
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
            "CALL_ONCE"} <= set(info.op_names)
    assert info.output_details[0].dtype == "UINT8"
    path = tmp_path / "stream.tflite"
    path.write_bytes(tflite)
    seqs = np.random.default_rng(5).normal(size=(5, 6, 8)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=seqs)
    res = CliRunner().invoke(main, ["validate", str(path), "--data",
                                    str(tmp_path / "s.npz"), "--target",
                                    "micro"])
    assert res.exit_code == 0, res.output
    assert "tflm output_0" in res.output and "vs LiteRT" in res.output
    # the float streaming model as reference, run over the same sequences
    ref_path = tmp_path / "float.tflite"
    ref_path.write_bytes(_streaming_tflite(quantize=False))
    res = CliRunner().invoke(main, ["validate", str(path), "--data",
                                    str(tmp_path / "s.npz"), "--reference",
                                    str(ref_path)])
    assert res.exit_code == 0, res.output
    assert "agreement" in res.output and "vs float model" in res.output

    feeds = Feeds.of(info)
    assert feeds.stateful
    xs = feeds.prepare([seqs])
    ref = litert.run_feeds(tflite, xs, stateful=True, reference_kernels=True)
    report = tflm.validate(tflite, xs, ref, sequences=True,
                           keep_outputs=True)
    got = report["outputs"][0]
    assert got.shape == (5, 6, 4) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref[0].astype(int)).max() <= 4
    # the state carries: one long sequence differs from five reset ones
    joined = litert.run_feeds(tflite, [xs[0].reshape(1, 30, 8)],
                              stateful=True, reference_kernels=True)[0]
    assert np.abs(joined.reshape(5, 6, 4)[1:, 0].astype(int)
                  - ref[0][1:, 0].astype(int)).max() > 4
    arena = report["arena_bytes"]
    assert tflm.runs_with_arena(tflite, arena)
    assert not tflm.runs_with_arena(tflite, arena - 16)


def test_segmentation_net_per_pixel():
    rng = _seeded()
    x = rng.uniform(size=(160, 8, 8, 1)).astype(np.float32)
    y = np.digitize(x[..., 0], [0.33, 0.66])  # 3 classes per pixel
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Conv2D(3, 1, activation="softmax", name="mask")(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(0.02),
                  "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    art = convert(model, x[:100], target="android")
    report = art.validate(x, y, require=False)
    v = report["validation"]["litert"]["outputs"]["mask"]
    assert v["task"] == "segmentation"
    assert v["details"]["decisions"] == 160 * 64
    assert v["metric"] == "accuracy_drop" and v["passed"], v["why"]
    assert v["details"]["accuracy"] > 0.8
    wrong = (y + 1) % 3
    report = art.validate(x, wrong, require=False,
                          reference={"mask": np.roll(
                              model.predict(x, verbose=0), 1, -1)})
    assert not report["validation"]["passed"]


def test_low_margin_classifier_with_unchanged_accuracy_passes():
    rng = _seeded()
    x = rng.normal(size=(400, 16)).astype(np.float32)
    w = rng.normal(size=(16, 4)).astype(np.float32)
    y = (x @ w + rng.normal(scale=3.0, size=(400, 4))).argmax(1)
    inp = keras.Input((16,))
    model = keras.Model(inp, keras.layers.Dense(
        4, activation="softmax", name="probs")(inp))
    model.layers[-1].set_weights([w * 0.02, np.zeros(4, np.float32)])
    art = convert(model, x[:200], target="micro")
    report = art.validate(x, y, require=False)
    v = report["validation"]["litert"]["outputs"]["probs"]
    assert v["details"]["agreement"] < 0.98  # what failed before
    assert v["metric"] == "accuracy_drop" and v["passed"], v["why"]
    report = art.validate(x, require=False)
    v = report["validation"]["litert"]["outputs"]["probs"]
    assert v["metric"] == "agreement" and v["passed"], v["why"]
    assert v["details"]["low_margin_share"] > 0.1
    assert report["validation"]["micro"]["outputs"]["probs"]["passed"]


def test_constant_float_model_is_flagged():
    rng = _seeded()
    x = rng.normal(size=(64, 6)).astype(np.float32)
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(
        3, activation="softmax", kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([0.1, 0.2, 0.7]))(inp))
    art = convert(model, x, target="android")
    report = art.validate(x, rng.integers(0, 3, 64), require=False)
    (v,) = report["validation"]["litert"]["outputs"].values()
    assert not report["validation"]["passed"]
    assert v["flags"] == ["constant_reference"] and "64 samples" in v["why"]


def test_two_outputs_judged_by_name():
    rng = _seeded()
    x = rng.normal(size=(300, 8)).astype(np.float32)
    labels = (x[:, 0] > x[:, 1]).astype(int) + 2 * (x[:, 2] > 0)
    target = (x[:, :4].sum(1, keepdims=True) / 2).astype(np.float32)
    inp = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu")(inp)
    cls = keras.layers.Dense(4, activation="softmax", name="cls")(h)
    val = keras.layers.Dense(1, name="val")(h)
    model = keras.Model(inp, [cls, val])
    model.compile("adam", {"cls": "sparse_categorical_crossentropy",
                           "val": "mse"})
    model.fit(x, {"cls": labels, "val": target}, epochs=30, batch_size=32,
              verbose=0)
    art = convert(model, x[:200], target="android")
    report = art.validate(x, {"cls": labels, "val": target}, require=False)
    outs = report["validation"]["litert"]["outputs"]
    assert set(outs) == {"cls", "val"}
    assert outs["cls"]["task"] == "classification"
    assert outs["val"]["task"] == "regression"
    assert outs["val"]["metric"] == "mae_growth"
    assert report["validation"]["passed"], report["validation"]["failures"]
    f_cls, f_val = model.predict(x, verbose=0)
    drifted = {"cls": f_cls, "val": f_val * 3}  # as if "val" had drifted
    report = art.validate(x, require=False, reference=drifted,
                          tolerances={"cls": 0.05})
    outs = report["validation"]["litert"]["outputs"]
    low = outs["cls"]["details"]["low_margin_share"]
    assert outs["cls"]["passed"]
    assert outs["cls"]["threshold"] == pytest.approx(1 - low - 0.05)
    assert outs["val"]["metric"] == "relative_error"
    assert not outs["val"]["passed"]
    assert [f.split(":")[0] for f in report["validation"]["failures"]] == [
        "LiteRT output val"]


def test_targets_shaped_like_the_output_are_not_class_ids():
    from tfcompress.pipeline.data import DataError, check_for_model
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(6)(inp))
    x = np.zeros((10, 6), np.float32)
    check_for_model(x, np.full((10, 6), 0.5, np.float32), model)
    with pytest.raises(DataError, match="labels in"):
        check_for_model(x, np.full(10, 7), model)


def test_third_party_float32_tflite_validates_in_tflm(tmp_path):
    """A plain float32 .tflite (TFLM's hello_world kind) runs in TFLM with
    its float kernels: validated against its Keras model and LiteRT, arena
    bisected; a dynamic-range file is still refused in one line."""
    rng = _seeded()
    x = rng.uniform(0, 2 * np.pi, size=(300, 1)).astype(np.float32)
    y = np.sin(x)
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(48, activation="relu"),
                              keras.layers.Dense(48, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=30, verbose=0)   # 48x48 > 1024 weights: the
    # dynamic-range converter below quantizes that kernel (hybrid op)
    model.save(tmp_path / "sine.h5")
    np.savez(tmp_path / "d.npz", x=x[:100], y=y[:100])
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (tmp_path / "f32.tflite").write_bytes(tflite)
    result = CliRunner().invoke(main, [
        "validate", str(tmp_path / "f32.tflite"), "--data",
        str(tmp_path / "d.npz"), "--target", "micro", "--reference",
        str(tmp_path / "sine.h5")])
    assert result.exit_code == 0, result.output
    lines = dict(ln.split(None, 1) if " " in ln else (ln, "")
                 for ln in result.output.splitlines() if ln and
                 not ln.startswith(("litert ", "tflm ", "arena ")))
    assert lines["input/output"].strip() == "float32/float32", lines
    assert lines["validation"].strip() == "passed"
    arena = [ln for ln in result.output.splitlines()
             if ln.startswith("arena bytes")]
    assert arena and int(arena[0].split()[-2].split("/")[0].replace(
        ",", "")) > 0 or int(arena[0].split()[-4]) > 0, arena
    verdicts = [ln for ln in result.output.splitlines()
                if ln.startswith(("litert ", "tflm ")) and "passed" in ln]
    assert any("(regression): passed" in ln and ln.startswith("tflm ")
               for ln in verdicts), result.output
    assert any("vs targets and float model (regression): passed" in ln
               for ln in verdicts), result.output
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]       # dynamic range
    (tmp_path / "dyn.tflite").write_bytes(conv.convert())
    result = CliRunner().invoke(main, [
        "validate", str(tmp_path / "dyn.tflite"), "--data",
        str(tmp_path / "d.npz"), "--target", "micro"])
    assert result.exit_code == 1
    errors = [ln for ln in result.output.splitlines() if ln.startswith(
        "Error")]
    assert len(errors) == 1 and "dynamic-range" in errors[0], result.output
