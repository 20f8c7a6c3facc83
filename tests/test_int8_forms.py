"""Keras 3 LayerNormalization and Embedding traced in their int8-friendly
forms: the same values as the Keras layers, and an int8 model without
float ops that TFLM runs (a Transformer-block text classifier)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from converters import convert
from converters.conversion.int8_forms import int8_forms
from converters.tflite import flatbuffer

L = keras.layers


@pytest.mark.parametrize("kwargs", [
    {}, {"axis": [1, 2]}, {"center": False}, {"scale": False},
    {"axis": 1, "epsilon": 1e-3}])
def test_layer_norm_form_computes_the_same_values(kwargs):
    rng = np.random.default_rng(0)
    layer = L.LayerNormalization(**kwargs)
    x = rng.normal(size=(4, 6, 5)).astype("float32") * 3 + 1
    want = np.asarray(layer(x))
    for w in layer.weights:   # non-trivial gamma and beta
        w.assign(rng.normal(size=w.shape).astype("float32"))
    want = np.asarray(layer(x))
    with int8_forms():
        got = tf.function(lambda t: layer(t))(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    assert np.asarray(layer(x)).tobytes() == want.tobytes()  # restored


def test_embedding_form_gathers_the_same_rows():
    layer = L.Embedding(30, 4)
    ids = np.random.default_rng(0).integers(0, 30, size=(3, 7)).astype("int32")
    want = np.asarray(layer(ids))
    with int8_forms():
        got = tf.function(lambda t: layer(t))(tf.constant(ids)).numpy()
    np.testing.assert_array_equal(got, want)


def test_keras3_transformer_with_embedding_is_int8_and_runs_in_tflm():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 40, size=(240, 12)).astype("int32")
    y = (ids[:, :6] > 20).sum(axis=1) > 3
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    e = L.Embedding(40, 16, name="embed")(tokens)
    a = L.MultiHeadAttention(2, 8, name="mha")(e, e)
    h = L.LayerNormalization(name="ln1")(e + a)
    f = L.Dense(16, activation="relu", name="ff")(h)
    h = L.LayerNormalization(name="ln2")(h + f)
    h = L.GlobalAveragePooling1D()(h)
    model = keras.Model(tokens, L.Dense(2, name="logits")(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    model.fit(ids, y.astype("int32"), epochs=8, verbose=0)
    art = convert(model, ids[:100], target="micro", name="tx")
    assert flatbuffer.float_ops(art.info) == []
    ops = set(art.info.op_names)
    assert {"GATHER", "BATCH_MATMUL", "SOFTMAX", "SUB"} <= ops
    assert not ops & {"NEG", "SELECT", "SELECT_V2", "DEQUANTIZE"}
    assert art.report["tflite"]["input"]["dtype"] == "int32"
    report = art.validate(ids[100:], y[100:].astype("int64"),
                          require=False)["validation"]
    assert report["micro"]["passed"], report["micro"]      # TFLM == LiteRT
    assert report["micro"]["arena_bytes"] > 0
    float_acc = float(np.mean(np.argmax(model.predict(ids[100:], verbose=0),
                                        axis=1) == y[100:]))
    assert float_acc > 0.8   # the model learned the task
    assert report["litert"]["accuracy"] >= float_acc - 0.03, report["litert"]


@pytest.mark.parametrize("layer, shape", [
    (L.UpSampling2D(), (2, 5, 7, 3)), (L.UpSampling2D((3, 2)), (2, 4, 4, 1)),
    (L.UpSampling1D(3), (2, 6, 4))])
def test_nearest_up_sampling_form_repeats_the_same_values(layer, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    want = np.asarray(layer(x))
    spec = tf.TensorSpec(shape, tf.float32)
    with int8_forms():
        fn = tf.function(lambda t: layer(t)).get_concrete_function(spec)
    ops = {op.type for op in fn.graph.get_operations()}
    assert "ResizeNearestNeighbor" in ops and "Tile" not in ops, ops
    np.testing.assert_array_equal(fn(tf.constant(x)).numpy(), want)


def test_keras3_unet_with_up_sampling_runs_in_tflm():
    """Keras 3 writes UpSampling2D as TILE (no TFLM kernel); traced as a
    nearest resize, the int8 U-Net runs in TFLM and agrees with LiteRT."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(160, 16, 16, 1)).astype(
        "float32")
    y = (x > 0.3).astype("float32")
    i = keras.Input((16, 16, 1))
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    c2 = L.Conv2D(8, 3, padding="same", activation="relu")(L.MaxPooling2D()(c1))
    c = L.Concatenate()([L.UpSampling2D()(c2), c1])
    model = keras.Model(i, L.Conv2D(1, 1, activation="sigmoid")(c))
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=6, verbose=0)
    art = convert(model, x[:64], target="micro", name="unet")
    ops = set(art.info.op_names)
    assert "RESIZE_NEAREST_NEIGHBOR" in ops and "TILE" not in ops, ops
    assert flatbuffer.float_ops(art.info) == []
    report = art.validate(x[64:], y[64:], require=False)["validation"]
    assert report["micro"]["passed"], report["micro"]      # TFLM == LiteRT
    assert report["litert"]["passed"], report["litert"]    # vs float, y
