import numpy as np
import pytest

from converters import ConversionError, convert, convert_bytes
from converters.tflite import flatbuffer
from tfcompress import keras
from tfcompress.keras2.env import tf
from conftest import compile_clf, small_cnn


def _sin_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, name="fc")(inp)
    h = tf.math.sin(h)  # TFLite has SIN only for float tensors
    out = keras.layers.Dense(2, name="out")(h)
    return keras.Model(inp, out)


def test_float_only_op_fails_validation_with_a_clear_message(rng):
    x = rng.normal(size=(32, 4)).astype(np.float32)
    art = convert(_sin_model(), x, target="android",
                  allow_float_fallback=True)
    with pytest.raises(ConversionError) as err:
        art.validate(x)
    message = str(err.value)
    assert "SIN" in message and "float" in message
    assert "\n" not in message


def test_float_only_op_without_fallback_names_the_op(rng):
    x = rng.normal(size=(32, 4)).astype(np.float32)
    with pytest.raises(ConversionError, match="(?i)sin"):
        convert(_sin_model(), x, target="android")


def test_int8_needs_representative_data():
    with pytest.raises(ValueError, match="representative data"):
        convert_bytes(small_cnn(), None, mode="int8")


def test_micro_refuses_float16_and_dynamic(rng):
    for mode in ("float16", "dynamic"):
        with pytest.raises(ConversionError, match="TFLM"):
            convert(small_cnn(), None, target="micro", mode=mode)


def test_report_has_the_contract_keys(clf_data):
    x, y = clf_data
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=2, verbose=0)
    art = convert(model, x[:100], target="android")
    report = art.validate(x, y)
    lite = report["tflite"]
    assert lite["bytes"] == len(art.tflite) > lite["gzip_bytes"] > 0
    assert lite["input"]["dtype"] == lite["output"]["dtype"] == "int8"
    assert lite["ops"] == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE"]
    val = report["validation"]["litert"]
    assert val["agreement"] >= 0.98
    assert abs(val["accuracy"] - report["keras"]["accuracy"]) <= 0.03


def test_flatbuffer_reader_rejects_garbage():
    with pytest.raises(flatbuffer.InvalidModelError, match="TFL3"):
        flatbuffer.read(b"\x00" * 64)


def test_regression_is_compared_by_error(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(1)])
    x = rng.uniform(0, 6, size=(200, 1)).astype(np.float32)
    art = convert(model, x, target="android")
    val = art.validate(x)["validation"]["litert"]
    assert "max_abs_error" in val and "accuracy" not in val
    assert val["agreement"] >= 0.98
