"""Binary/ternary/4-bit weights: STE training, strip, int8 export with
<= 2/3/16 values per channel, TFLM LUT compression equal to the int8 model."""

import numpy as np
import pytest

from converters import convert_bytes
from converters.runtimes import litert
from converters.runtimes import metrics as validate
from tfcompress.keras2 import lowbit, lowbit_export
from tfcompress.keras2 import quantization
from tfcompress.keras2 import selection
from tfcompress.keras2.env import keras, tf
from tfcompress.pipeline.recipe import Recipe, RecipeError
from tfcompress.pipeline.stages import compress

L = keras.layers


# -- quantizers and the wrapper ---------------------------------------------
def test_binary_and_ternary_values_per_channel():
    w = tf.constant([[0.5, -1.0, 0.0], [-1.5, 3.0, 0.05], [0.1, 2.0, -0.3]])
    b = lowbit.quantize_kernel(w, "binary", (0,)).numpy()
    np.testing.assert_allclose(b, [[0.7, -2.0, 0.1167], [-0.7, 2.0, 0.1167],
                                   [0.7, 2.0, -0.1167]], atol=1e-4)
    t = lowbit.quantize_kernel(w, "ternary", (0,), threshold=0.7).numpy()
    # column 0: mean|w| = 0.7, delta 0.49: 0.1 -> 0; alpha = mean(0.5, 1.5)
    np.testing.assert_allclose(t[:, 0], [1.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(t[:, 1], [0.0, 2.5, 2.5], atol=1e-6)  # -1 < 1.4
    np.testing.assert_allclose(t[:, 2], [0.0, 0.0, -0.3], atol=1e-6)


def test_uniform_grid_has_at_most_15_levels_per_channel():
    w = tf.random.stateless_normal((3, 3, 8, 6), seed=(1, 2))
    q = lowbit.uniform_kernel(w, 4, (0, 1, 2)).numpy()
    for c in range(6):
        assert np.unique(q[..., c]).size <= 15
        np.testing.assert_allclose(np.abs(q[..., c]).max(),
                                   np.abs(w.numpy()[..., c]).max(), rtol=1e-6)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.Dense(5), (4, 7)),
    (lambda: L.Conv2D(5, 3), (2, 6, 6, 3)),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (2, 6, 6, 3)),
])
@pytest.mark.parametrize("mode, values", [("binary", 2), ("ternary", 3)])
def test_wrapper_forward_uses_quantized_kernel_and_ste(make, shape, mode,
                                                       values):
    keras.utils.set_random_seed(0)
    x = tf.random.stateless_normal(shape, seed=(3, 4))
    wrapped = lowbit.LowBitWeights(make(), mode)
    wrapped(x)
    q = wrapped.quantized_kernel()
    axes = lowbit._channel_axes(wrapped.layer, q.ndim)
    per_channel = np.moveaxis(q, axes, range(len(axes))).reshape(
        -1, int(np.prod([q.shape[i] for i in range(q.ndim) if i not in axes])))
    assert max(np.unique(c).size for c in per_channel.T) <= values
    plain = make()
    plain(x)
    plain.set_weights([q] + wrapped.layer.get_weights()[1:])
    np.testing.assert_allclose(wrapped(x), plain(x), atol=1e-5)
    # straight-through: the latent kernel gets the quantized kernel's gradient
    latent = wrapped.trainable_weights[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x) ** 2)
    g = tape.gradient(loss, latent)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(plain(x) ** 2)
    want = tape.gradient(loss, plain.trainable_weights[0])
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5)
    assert [w.shape for w in wrapped.weights] == [w.shape for w in plain.weights]


def test_wrapper_config_round_trip_and_save_load(tmp_path):
    layer = lowbit.LowBitWeights(L.Dense(4, name="fc"), "ternary",
                                 threshold=0.6)
    config = layer.get_config()
    again = lowbit.LowBitWeights.from_config(config).get_config()
    assert again == config and config["mode"] == "ternary" \
        and config["threshold"] == 0.6 and config["name"] == "fc"
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, name="a"),
                              L.Dense(8, name="b"), L.Dense(3, name="c")])
    wrapped = lowbit.binarize(model, "ternary", threshold=0.6)
    path = str(tmp_path / "m.keras")
    wrapped.save(path)
    import tfcompress as tfc
    with tfc.scope():
        loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), wrapped(x), atol=1e-6)
    assert loaded.get_layer("b").get_config() == wrapped.get_layer(
        "b").get_config()


def test_binarize_skips_first_last_and_reports():
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="c1"),
                              L.Conv2D(8, 3, name="c2"), L.Flatten(name="f"),
                              L.Dense(16, name="d1"), L.Dense(3, name="d2")])
    wrapped = lowbit.binarize(model)
    rep = wrapped.compression_report
    assert rep.compressed == ["c2", "d1"]
    assert rep.skipped["c1"] == rep.skipped["d2"] == selection.SKIP_FIRST_LAST
    assert rep.skipped["f"] == selection.SKIP_NO_WEIGHTS
    everything = lowbit.binarize(model, keep_first_last=False, skip=["d1"])
    assert everything.compression_report.compressed == ["c1", "c2", "d2"]
    with pytest.raises(ValueError, match="unknown mode 'quad'"):
        lowbit.binarize(model, "quad")
    tiny = keras.Sequential([keras.Input((3,)), L.Dense(2, name="only")])
    with pytest.raises(ValueError, match="keep_first_last=False"):
        lowbit.binarize(tiny)


def test_nbit_quantize_config_round_trip():
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="c1"),
                              L.Conv2D(8, 3, name="c2"), L.Flatten(),
                              L.Dense(3, name="d")])
    qat = quantization.quantize(model, weight_bits=4)
    assert qat.qat_scheme == "QAT 4-bit weights"
    cfg = qat.get_layer("c2").quantize_config
    assert isinstance(cfg, lowbit.LowBitQuantizeConfig)
    assert not isinstance(qat.get_layer("c1").quantize_config,
                          lowbit.LowBitQuantizeConfig)  # first layer: 8-bit
    again = lowbit.LowBitQuantizeConfig.from_config(cfg.get_config())
    assert again.get_config() == cfg.get_config() and again.weight_bits == 4
    import tfcompress as tfc
    with tfc.scope():
        clone = type(qat).from_config(qat.get_config())
    assert clone.get_layer("c2").quantize_config.get_config() == \
        cfg.get_config()
    with pytest.raises(ValueError, match="cannot preserve"):
        quantization.quantize(model, weight_bits=4, preserve="clusters")


# -- export: int8 values per channel and TFLM LUT ---------------------------
def _mlp():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((64,)),
                             L.Dense(128, activation="relu", name="fc1"),
                             L.Dense(64, activation="relu", name="fc2"),
                             L.Dense(10, name="out")])


@pytest.fixture(scope="module")
def toy_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(512, 64)).astype(np.float32)
    y = (x[:, :10].argmax(1)).astype(np.int64)
    return x, y


def _fit(model, x, y, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model


@pytest.mark.parametrize("variant, max_unique, bits", [
    ("binary", 2, 1), ("ternary", 3, 2), ("int4", 15, 4)])
def test_export_values_per_channel_and_tflm_lut_equal(toy_data, variant,
                                                      max_unique, bits):
    x, y = toy_data
    if variant == "int4":
        model = _fit(quantization.quantize(_fit(_mlp(), x, y), weight_bits=4,
                                           keep_first_last=False), x, y)
    else:
        model = lowbit.strip_lowbit(_fit(lowbit.binarize(
            _mlp(), variant, keep_first_last=False), x, y))
    tflite = convert_bytes(model, x[:100])
    unique = lowbit_export.channel_unique(tflite)
    assert set(unique) == {"fc1", "fc2", "out"}
    assert max(unique.values()) <= max_unique
    assert min(unique.values()) >= max_unique - 1  # really trained low-bit
    ref = litert.run(tflite, x[:40])
    small, rep = lowbit_export.micro_export(tflite, ref.raw_inputs)
    assert small is not None and rep["tflm_equal"] and rep["tflm_max_diff"] == 0
    assert set(rep["bits"].values()) == {bits}
    assert rep["bytes_after"] == len(small) < rep["bytes_before"]
    assert rep["index_bits_per_weight"] == pytest.approx(bits, abs=0.01)
    assert bits <= rep["stored_bits_per_weight"] < bits + 0.6
    # the LUT model's TFLM outputs match LiteRT's int8 outputs too
    from converters.runtimes import tflm
    got = tflm.run(small, ref.raw_inputs, arena_size=rep["arena_after"] + 1024)
    assert np.abs(got[0].astype(int) - ref.raw_outputs.astype(int)).max() <= 1


def test_recipe_stages_and_errors(toy_data):
    x, y = toy_data
    rec = {"stages": [{"binarize": {"mode": "ternary", "epochs": 1,
                                    "keep_first_last": False}}],
           "fit": {"loss": "sparse_categorical_crossentropy",
                   "from_logits": True, "verbose": 0, "batch_size": 64}}
    result = compress(_mlp(), (x, y), None, rec)
    assert not lowbit.is_lowbit(result.model)
    for layer in result.model.layers:
        k = layer.get_weights()[0]
        assert max(np.unique(k[:, c]).size for c in range(k.shape[1])) <= 3
    assert Recipe.load("binary").stages[0].params["mode"] == "binary"
    assert Recipe.load("int4").stages[0].params["weight_bits"] == 4
    with pytest.raises(RecipeError, match=r"stages\[0\].binarize.mode"):
        Recipe.from_dict({"stages": [{"binarize": {"mode": "quaternary"}}]})
    with pytest.raises(RecipeError, match=r"quantize.weight_bits"):
        Recipe.from_dict({"stages": [{"quantize": {"weight_bits": 1}}]})


# -- digits ----------------------------------------------------------------
def _digits_variant(variant, float_epochs, epochs):
    from sample_models import digits
    (x, y), (xt, yt) = digits.load_data()
    base = digits.build_model()
    digits.compile_model(base)
    base.fit(x, y, epochs=float_epochs, batch_size=32, verbose=0)
    if variant == "binary":
        wrapped = lowbit.binarize(base, "binary")
        digits.compile_model(wrapped)
        wrapped.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        model, limit = lowbit.strip_lowbit(wrapped), 2
    else:
        model = quantization.quantize(base, weight_bits=4)
        digits.compile_model(model, 1e-4)
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        limit = 15
    tflite = convert_bytes(model, x[:200])
    unique = lowbit_export.channel_unique(tflite)
    assert unique["conv2"] <= limit and unique["fc1"] <= limit
    assert unique["logits"] > limit  # last layer kept 8-bit (conv1 has 9
    # weights per channel: its count cannot tell)
    run = litert.run(tflite, xt)
    acc = validate.compare(run.outputs, None, yt)["accuracy"]
    small, rep = lowbit_export.micro_export(tflite, run.raw_inputs[:60])
    assert rep["tflm_equal"]
    assert rep["bits"] == {"conv2": 1 if variant == "binary" else 4,
                           "fc1": 1 if variant == "binary" else 4}
    print(f"digits {variant}: accuracy {acc:.4f}, {len(tflite)} -> "
          f"{rep['bytes_after']} B flash, {rep['stored_bits_per_weight']} "
          "bits/weight stored")
    return acc, rep


@pytest.mark.parametrize("variant", ["binary", "int4"])
def test_digits_fast(variant):
    acc, rep = _digits_variant(variant, float_epochs=6, epochs=2)
    assert acc >= 0.85
    assert rep["bytes_after"] < 0.7 * rep["bytes_before"]


@pytest.mark.slow
@pytest.mark.parametrize("variant, min_acc", [("binary", 0.94),
                                              ("int4", 0.95)])
def test_digits_full(variant, min_acc):
    acc, rep = _digits_variant(variant, float_epochs=20, epochs=8)
    assert acc >= min_acc
    limit = 0.45 if variant == "binary" else 0.7
    assert rep["bytes_after"] < limit * rep["bytes_before"]
