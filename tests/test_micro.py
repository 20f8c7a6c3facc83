"""The TFLM target: refusals, resolver methods, arena bisection, validation."""

import numpy as np
import pytest

from converters.tflite import flatbuffer
from converters.targets import micro
from converters.runtimes import tflm
from converters.conversion.modes import convert_bytes
from converters.tflite.flatbuffer import ModelInfo, Operator, Tensor
from tfcompress.keras2.env import keras, tf


def _convert(model, x, mode="int8"):
    return convert_bytes(model, x, mode=mode)


def _quantize(tflite, x):
    t = flatbuffer.read(tflite).input_details[0]
    q = np.round(x / t.scale[0]) + t.zero_point[0]
    return np.clip(q, -128, 127).astype(np.int8)


def _litert(tflite, x):
    """LiteRT outputs with its builtin kernels, one invoke per sample.

    XNNPACK (the default delegate) rounds requantization differently from
    TFLM; the builtin kernels round like TFLM does.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(
        model_content=tflite,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    ys = []
    for s in x:
        interp.set_tensor(inp["index"], s.reshape(inp["shape"]))
        interp.invoke()
        ys.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


@pytest.fixture(scope="module")
def sine():
    """The TFLM hello_world model: Dense16-relu, Dense16-relu, Dense1."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((1,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1)])
    x = np.random.default_rng(0).uniform(0, 2 * np.pi, (200, 1)).astype(np.float32)
    model.compile("adam", "mse")
    model.fit(x, np.sin(x), epochs=3, batch_size=16, verbose=0)
    tflite = _convert(model, x[:100])
    return tflite, _quantize(tflite, x[100:])


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.layers.Input((4,)),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="probs")])
    x = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    tflite = _convert(model, x[:100])
    return tflite, _quantize(tflite, x[100:])


@pytest.fixture(scope="module")
def big_dense():
    """A Dense kernel of 64x32: large enough for dynamic-range quantization."""
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.layers.Input((64,)),
                             keras.layers.Dense(32, name="big")])


# ------------------------------------------------------------- refusals ---

def test_int8_model_is_compatible(sine, classifier):
    micro.check_compatible(sine[0])
    micro.check_compatible(classifier[0])
    assert micro.resolver_methods(flatbuffer.read(sine[0])) == ["AddFullyConnected"]
    assert micro.resolver_methods(classifier[0]) == ["AddFullyConnected", "AddSoftmax"]


def test_refuses_op_tflm_lacks():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.layers.Input((4,)),
        keras.layers.Dense(8, activation="gelu", name="fancy"),
        keras.layers.Dense(3)])
    x = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    tflite = _convert(model, x)
    assert "GELU" in flatbuffer.read(tflite).op_names
    with pytest.raises(micro.MicroError, match=r"GELU \(layer 'fancy'\).*no kernel"):
        micro.check_compatible(tflite)
    with pytest.raises(micro.MicroError, match="GELU"):
        micro.resolver_methods(tflite)


def test_refuses_flex_op():
    class CumProd(keras.layers.Layer):
        def call(self, x):
            return tf.math.cumprod(x, axis=1)

    model = keras.Sequential([keras.layers.Input((4,)),
                              keras.layers.Dense(4), CumProd(name="cumprod")])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                      tf.lite.OpsSet.SELECT_TF_OPS]
    tflite = conv.convert()
    with pytest.raises(micro.MicroError,
                       match=r"FlexCumprod \(layer 'cumprod'\).*Flex"):
        micro.check_compatible(tflite, require_int8=False)


def test_refuses_unknown_custom_op():
    tensors = [Tensor(0, "x", "INT8", [1, 4], 0, [0.1], [0], 0, False),
               Tensor(1, "model/my_layer/MyOp", "INT8", [1, 4], 0, [0.1], [0],
                      0, False)]
    info = ModelInfo(0, tensors, [Operator(0, "MyOp", True, [0], [1], 1)],
                     [0], [1], {}, 1, "")
    with pytest.raises(micro.MicroError, match=r"MyOp \(layer 'my_layer'\).*custom op"):
        micro.check_compatible(info)


def test_refuses_float16_model(big_dense):
    tflite = _convert(big_dense, None, mode="float16")
    with pytest.raises(micro.MicroError) as err:
        micro.check_compatible(tflite)
    msg = str(err.value)
    assert "float16" in msg and "TFLM cannot run" in msg and "int8" in msg
    assert "'big'" in msg and "\n" not in msg


def test_refuses_dynamic_range_model(big_dense):
    tflite = _convert(big_dense, None, mode="dynamic")
    dtypes = {t.dtype for t in flatbuffer.read(tflite).tensors}
    assert {"FLOAT32", "INT8"} <= dtypes  # hybrid: float activations, int8 weights
    with pytest.raises(micro.MicroError) as err:
        micro.check_compatible(tflite)
    msg = str(err.value)
    assert "dynamic-range" in msg and "TFLM cannot run" in msg
    assert "representative_dataset" in msg and "'big'" in msg and "\n" not in msg


def test_float32_model_needs_opt_in(big_dense):
    tflite = _convert(big_dense, None, mode="float32")
    with pytest.raises(micro.MicroError, match="float model.*'big'"):
        micro.check_compatible(tflite)
    micro.check_compatible(tflite, require_int8=False)


def test_refuses_dynamic_shapes():
    model = keras.Sequential([keras.layers.Input((None, 4)),
                              keras.layers.ReLU(name="act")])
    tflite = _convert(model, None, mode="float32")
    with pytest.raises(micro.MicroError, match=r"dynamic shape.*\[1, -1, 4\]"):
        micro.check_compatible(tflite, require_int8=False)


@pytest.mark.parametrize("name, layer", [
    ("sequential/dense_1/MatMul;sequential/dense_1/Relu", "dense_1"),
    ("sequential/fancy/Gelu/mul_2;sequential/fancy/Gelu/Erfc", "fancy"),
    ("model/block/conv/Conv2D", "conv"),
    ("sequential/Dense1/MatMul", "Dense1"),
])
def test_layer_of(name, layer):
    tensors = [Tensor(0, "in", "INT8", [1], 0, [], [], 0, False),
               Tensor(1, name, "INT8", [1], 0, [], [], 0, False)]
    info = ModelInfo(0, tensors, [Operator(0, "ADD", False, [0], [1], 1)],
                     [0], [1], {}, 1, "")
    assert micro.layer_of(info, info.operators[0]) == layer


# ---------------------------------------------------- TFLM runs and arena ---

def test_validate_sine_agrees_and_arena_is_minimal(sine):
    tflite, x = sine
    report = tflm.validate(tflite, x, _litert(tflite, x))
    assert report["passed"], report
    assert report["samples"] == len(x)
    assert report["max_abs_lsb"] <= 1
    assert report["agreement"] >= 0.99 and report["classification"] is False
    arena, rec = report["arena_bytes"], report["arena_recommended"]
    assert arena % 16 == 0 and rec % 16 == 0
    assert rec - arena == report["arena_margin"] and 16 <= rec - arena <= 0.05 * arena
    assert tflm.runs_with_arena(tflite, arena)
    assert not tflm.runs_with_arena(tflite, arena - 16)


def test_validate_classifier(classifier):
    tflite, x = classifier
    report = tflm.validate(tflite, x, _litert(tflite, x), tolerance_lsb=1)
    assert report["classification"] is True
    assert report["agreement"] >= 0.98 and report["max_abs_lsb"] <= 1
    assert report["passed"]


def test_validate_fails_on_disagreement(classifier):
    tflite, x = classifier
    ref = _litert(tflite, x).astype(np.int16)
    ref[::5, 0] += 5  # 20% of the samples off by 5 LSB
    ref = np.clip(ref, -128, 127).astype(np.int8)
    report = tflm.validate(tflite, x, ref)
    assert not report["passed"]
    assert report["max_abs_lsb"] >= 4 and report["within_tolerance"] < 0.9


def test_run_matches_input_layout(classifier):
    tflite, x = classifier
    out = tflm.run(tflite, x[:7], arena_size=8192)
    assert len(out) == 1 and out[0].shape == (7, 3) and out[0].dtype == np.int8


def test_wrong_input_dtype_is_refused(classifier):
    tflite, x = classifier
    with pytest.raises(micro.MicroError, match="INT8 but the data is float32.*quantize"):
        tflm.run(tflite, x.astype(np.float32), arena_size=8192)


def test_tiny_arena_is_an_error_not_a_crash(sine):
    tflite, x = sine
    assert not tflm.runs_with_arena(tflite, 64)
    with pytest.raises(micro.MicroError, match="64-byte arena") as err:
        tflm.run(tflite, x[:2], arena_size=64)
    assert "\n" not in str(err.value)


def test_arena_margin_rule():
    assert tflm.arena_margin(2032) == 96
    assert tflm.arena_margin(100_000) == 4992
    for arena in (336, 2032, 10_000, 123_456):
        m = tflm.arena_margin(arena)
        assert m % 16 == 0 and 16 <= m <= 0.05 * arena
