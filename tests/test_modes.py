"""Each conversion mode puts the promised dtypes into the flatbuffer.

For int8, float16, dynamic and int16x8 (and float32 as the reference): the
dtype of the weights feeding CONV_2D / FULLY_CONNECTED (looking through the
float16 DEQUANTIZE), of the activations those ops produce, and of the model's
I/O; outputs agree with Keras; and tfcompress QAT keeps the signature names.
"""

import numpy as np
import pytest

import tfcompress
from converters.tflite import flatbuffer
from converters.runtimes import litert
from converters.conversion.modes import convert_bytes
from converters.tflite.inspect import guess_mode
from tfcompress.keras2.env import keras

#: the converter leaves weights with fewer elements float in dynamic mode.
DYNAMIC_MIN_ELEMENTS = 1024

#: mode -> (I/O dtype, weight dtype, activation dtype)
EXPECTED = {
    "float32": ("FLOAT32", "FLOAT32", "FLOAT32"),
    "int8": ("INT8", "INT8", "INT8"),
    "float16": ("FLOAT32", "FLOAT16", "FLOAT32"),
    "dynamic": ("FLOAT32", "INT8", "FLOAT32"),
    "int16x8": ("INT16", "INT8", "INT16"),
}


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(48, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    out = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def data():
    return np.random.RandomState(0).rand(64, 8, 8, 3).astype(np.float32)


@pytest.fixture(scope="module")
def converted(model, data):
    return {mode: convert_bytes(model, data, mode=mode) for mode in EXPECTED}


def weights_and_activations(info):
    """[(op, weight tensor, output tensor)] for CONV_2D / FULLY_CONNECTED."""
    producer = {o: op for op in info.operators for o in op.outputs}
    rows = []
    for op in info.operators:
        if op.name not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        weight = info.tensors[op.inputs[1]]
        if not weight.is_constant:  # float16: constant -> DEQUANTIZE -> op
            dq = producer[weight.index]
            assert dq.name == "DEQUANTIZE"
            weight = info.tensors[dq.inputs[0]]
        assert weight.is_constant
        rows.append((op.name, weight, info.tensors[op.outputs[0]]))
    return rows


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_weight_activation_and_io_dtypes(converted, mode):
    io_dtype, weight_dtype, act_dtype = EXPECTED[mode]
    info = flatbuffer.read(converted[mode])
    rows = weights_and_activations(info)
    assert sorted(op for op, _, _ in rows) == [
        "CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    for op, weight, act in rows:
        expected = weight_dtype
        if mode == "dynamic" and weight.data.size < DYNAMIC_MIN_ELEMENTS:
            expected = "FLOAT32"
        assert weight.dtype == expected, (mode, op, weight.name)
        assert act.dtype == act_dtype, (mode, op, act.name)
        if expected in ("INT8",):
            assert len(weight.scale) == weight.shape[0]  # per-channel
            assert set(weight.zero_point) == {0}
    assert [t.dtype for t in info.input_details] == [io_dtype]
    assert [t.dtype for t in info.output_details] == [io_dtype]
    if mode in ("int8", "int16x8"):
        assert info.input_details[0].scale and info.output_details[0].scale
    # the big FC kernel (1728x16) is quantized in dynamic mode: it is int8
    if mode == "dynamic":
        assert any(w.dtype == "INT8" and w.data.size >= DYNAMIC_MIN_ELEMENTS
                   for _, w, _ in rows)
    assert guess_mode(info) == mode


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_outputs_agree_with_keras(model, data, converted, mode):
    reference = model.predict(data, verbose=0)
    run = litert.run(converted[mode], data)
    err = np.abs(run.outputs - reference).max()
    spread = float(np.ptp(reference))
    out_scale = (flatbuffer.read(converted[mode]).output_details[0].scale
                 or [0.0])[0]
    tolerance = {"float32": 1e-5, "float16": 2e-3 * spread,
                 "int8": 3 * out_scale,  # three output LSBs
                 "dynamic": 0.02 * spread, "int16x8": 0.02 * spread}[mode]
    assert err <= tolerance, (mode, err, tolerance)


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_signature_names_are_keras_names(converted, mode):
    sigs = flatbuffer.read(converted[mode]).signatures
    assert list(sigs) == ["serving_default"]
    assert list(sigs["serving_default"]["inputs"]) == ["image"]
    assert list(sigs["serving_default"]["outputs"]) == ["logits"]


def test_qat_keeps_signature_names(model, data, converted):
    qat = tfcompress.quantize(_model())  # a fresh copy: QAT clones layers
    assert [l.name for l in qat.layers
            if not l.name.startswith("quantize_layer")] == [
        l.name for l in model.layers]
    q_info = flatbuffer.read(convert_bytes(qat, data[:32], mode="int8"))
    f_info = flatbuffer.read(converted["int8"])
    names = {k: {p: sorted(v[p]) for p in ("inputs", "outputs")}
             for k, v in f_info.signatures.items()}
    assert {k: {p: sorted(v[p]) for p in ("inputs", "outputs")}
            for k, v in q_info.signatures.items()} == names
    assert names == {"serving_default": {"inputs": ["image"],
                                         "outputs": ["logits"]}}
    for _, weight, act in weights_and_activations(q_info):
        assert (weight.dtype, act.dtype) == ("INT8", "INT8")


def test_int4_mode_stores_4bit_weights_and_keeps_accuracy(digits_data):
    """ai-edge-quantizer's dynamic_wi4_afp32: weights at 4 bits, smaller
    than int8, accuracy close to float."""
    from converters.runtimes import litert
    from converters.runtimes import metrics as validate
    from converters.conversion.modes import convert_bytes as convert
    from sample_models import digits

    (x, y), (x_test, y_test) = digits_data
    model = digits.build_model()
    digits.compile_model(model)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    int8 = convert(model, x[:200], mode="int8")
    int4 = convert(model, mode="int4")
    info = flatbuffer.read(int4)
    kernels = [info.tensors[op.inputs[1]] for op in info.operators
               if op.name in ("CONV_2D", "FULLY_CONNECTED")]
    assert {k.dtype for k in kernels} == {"INT4"}
    assert len(int4) < 0.7 * len(int8)
    accuracy = {}
    for name, blob in (("int4", int4), ("float32", convert(model, mode="float32"))):
        run = litert.run(blob, x_test)
        accuracy[name] = validate.compare(run.outputs, None, y_test)["accuracy"]
    assert accuracy["float32"] - accuracy["int4"] <= 0.02
