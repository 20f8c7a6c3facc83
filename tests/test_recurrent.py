"""Recurrent layers on their way to int8 (converters.conversion.recurrent):
unrolled GRU/LSTM layers convert to all-int8 models, on the Android path too
(the signature kept), and ``unrolled`` leaves a model whose tf_keras LSTM
fuses into ``UNIDIRECTIONAL_SEQUENCE_LSTM`` as it is."""

import keras
import numpy as np
import pytest

from converters.conversion import recurrent
from converters.conversion.modes import convert_bytes
from converters.runtimes import litert
from converters.tflite import flatbuffer
from tfcompress.keras2.env import keras as tf_keras

STEPS, FEATURES = 12, 6


def _sequences(n=64):
    return np.random.default_rng(0).normal(
        size=(n, STEPS, FEATURES)).astype(np.float32)


def _model(k, *layers):
    """``sequence`` -> the recurrent ``layers`` -> Dense softmax ``label``."""
    k.utils.set_random_seed(0)
    inp = k.Input((STEPS, FEATURES), name="sequence")
    h = inp
    for i, (cls, units) in enumerate(layers):
        last = i == len(layers) - 1
        h = getattr(k.layers, cls)(units, return_sequences=not last,
                                   name=f"{cls.lower()}{i}")(h)
    out = k.layers.Dense(3, activation="softmax", name="label")(h)
    return k.Model(inp, out)


def _int8_agreement(tflite, model, x):
    """Top-1 agreement of the int8 model (LiteRT) with the Keras model;
    the state (a fused LSTM's) reset before each sample, as Keras starts
    each sample from zero."""
    interp = litert.interpreter(tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    got = []
    for row in litert.quantize(x, inp):
        interp.reset_all_variables()
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        got.append(litert.dequantize(interp.get_tensor(out["index"]), out))
    want = model.predict(x, verbose=0)
    return float(np.mean(np.concatenate(got).argmax(1) == want.argmax(1)))


def _all_int8_three_times(model, x):
    """Three int8 conversions of the unrolled model, each without a float
    op or a loop (the float SPLIT came and went run to run)."""
    for _ in range(3):
        tflite = convert_bytes(model, x, mode="int8", unroll=True)
        info = flatbuffer.read(tflite)
        assert flatbuffer.float_ops(info) == []
        assert "WHILE" not in info.op_names
    return tflite, info


@pytest.mark.parametrize("gen,cls", [
    (3, "LSTM"), (3, "GRU"), pytest.param(2, "GRU", marks=pytest.mark.slow)])
def test_unrolled_layer_is_all_int8_with_its_signature(gen, cls):
    """16 units, untrained (zero biases): the zero-state first step leaves a
    gate split with a dead output, which the converter (run to run) kept
    as a float SPLIT of a dequantized tensor; three conversions, all int8."""
    model = _model(keras if gen == 3 else tf_keras, (cls, 16))
    x = _sequences()
    tflite, info = _all_int8_three_times(model, x)
    assert {t.dtype for t in info.input_details + info.output_details} == {
        "INT8"}
    assert info.signatures["serving_default"]["inputs"] == {
        "sequence": info.inputs[0]}
    assert list(info.signatures["serving_default"]["outputs"]) == ["label"]
    assert _int8_agreement(tflite, model, x) >= 0.9


def test_unrolled_keras3_lstm_writes_the_android_variants(tmp_path):
    """The Android artifact: int8 (app I/O), float16 and float32 variants,
    each with the Keras input/output names; the int8 one computes only on
    integer tensors."""
    from converters.targets import android
    model = recurrent.unrolled(_model(keras, ("LSTM", 16)))
    report = android.write_android(model, _sequences(), tmp_path, name="m")
    for key, variant in report["variants"].items():
        assert [i["name"] for i in variant["inputs"]] == ["sequence"], key
        assert [o["name"] for o in variant["outputs"]] == ["label"], key
    info = flatbuffer.read((tmp_path / "m_int8.tflite").read_bytes())
    assert flatbuffer.float_ops(info) == []
    assert "SPLIT" in info.op_names


def test_unroll_leaves_a_fusing_tf_keras_lstm_alone():
    model = _model(tf_keras, ("LSTM", 8))
    assert recurrent.unrolled(model) is model
    assert not recurrent.has_unrolled(model) and recurrent.has_fused(model)
    assert recurrent.blocking_layers(model) == []


@pytest.mark.slow
def test_unroll_of_a_mixed_model_unrolls_both_and_is_all_int8():
    """Beside a GRU that would loop, the tf_keras LSTM is unrolled too: the
    unrolled model converts frozen (all int8, run to run), which would turn
    a fused LSTM into a loop."""
    model = _model(tf_keras, ("LSTM", 8), ("GRU", 8))
    copy = recurrent.unrolled(model)
    assert copy.get_layer("lstm0").unroll and copy.get_layer("gru1").unroll
    assert recurrent.blocking_layers(copy) == []
    x = _sequences()
    tflite, _ = _all_int8_three_times(model, x)
    assert _int8_agreement(tflite, model, x) >= 0.9
