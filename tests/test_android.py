"""The android target: int8 + float16 variants, stable signature, sidecar."""

import hashlib
import json
import os

import numpy as np
import pytest

import tfcompress
from converters.targets import android
from converters.tflite import flatbuffer
from converters.runtimes import litert
from converters.conversion.app_io import convert_app_io
from converters.conversion.modes import convert_bytes
from converters.tflite.inspect import metadata
from tfcompress.keras2.env import keras

LABELS = ["zero", "one", "two"]


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(3, name="scores")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def data():
    return np.random.RandomState(0).rand(32, 8, 8, 1).astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("android")
    model = _model()
    report = android.write_android(
        model, data, out, labels=LABELS,
        normalization={"mean": [127.5], "std": [63.75]})
    return model, out, report


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_files_and_default_model(written):
    _, out, report = written
    names = sorted(os.listdir(out))
    assert names == ["labels.txt", "model.json", "model.tflite",
                     "model_fp16.tflite", "model_int8.tflite"]
    assert _read(out / "model.tflite") == _read(out / "model_int8.tflite")
    for variant in report["variants"].values():
        assert variant["bytes"] == len(_read(out / variant["file"]))
    assert (out / "labels.txt").read_text().split() == LABELS


def test_variant_dtypes(written):
    _, out, report = written
    int8 = flatbuffer.read(_read(out / "model_int8.tflite"))
    fp16 = flatbuffer.read(_read(out / "model_fp16.tflite"))
    # an image classifier: uint8 at the edges, int8 inside
    assert [t.dtype for t in int8.input_details + int8.output_details] == [
        "UINT8", "UINT8"]
    assert flatbuffer.float_ops(int8) == []
    assert {t.dtype for t in int8.tensors if t.is_constant
            and len(t.shape) >= 2} == {"INT8"}
    # the input quantization is the normalization: q = pixel
    inp = int8.input_details[0]
    assert inp.scale[0] == pytest.approx(1 / 63.75)
    assert inp.zero_point[0] in (127, 128)
    assert [t.dtype for t in fp16.input_details + fp16.output_details] == [
        "FLOAT32", "FLOAT32"]
    fp16_weights = [t for t in fp16.tensors
                    if t.is_constant and len(t.shape) >= 2]
    assert fp16_weights and {t.dtype for t in fp16_weights} == {"FLOAT16"}
    assert report["variants"]["fp16"]["gpu_fallback_ops"] == []
    assert report["variants"]["int8"]["inputs"][0]["quantization"]["scale"] \
        > 0


def test_signature_names_are_the_keras_names(written):
    model, out, report = written
    assert report["signature"] == {"key": "serving_default",
                                   "inputs": ["pixels"],
                                   "outputs": ["scores"]}
    for file in ("model_int8.tflite", "model_fp16.tflite"):
        sig = flatbuffer.read(_read(out / file)).signatures
        assert list(sig) == ["serving_default"]
        assert list(sig["serving_default"]["inputs"]) == model.input_names
        assert list(sig["serving_default"]["outputs"]) == model.output_names


def test_sidecar_carries_labels_normalization_and_io(written):
    _, out, report = written
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["labels"] == LABELS
    norm = sidecar["normalization"]
    assert norm["mean"] == [127.5] and norm["std"] == [63.75]
    raw = np.array([0.0, 127.5, 255.0])
    np.testing.assert_allclose(raw * norm["scale"][0] + norm["offset"][0],
                               (raw - 127.5) / 63.75)
    int8_in = sidecar["variants"]["int8"]["inputs"][0]
    assert (int8_in["name"], int8_in["dtype"]) == ("pixels", "uint8")
    assert (sidecar["task"], sidecar["io"]) == ("image_classifier", "uint8")
    assert sidecar["exact_pixels"] is False  # mean 127.5: half a pixel
    assert isinstance(int8_in["quantization"]["zero_point"], int)
    assert sidecar["variants"]["fp16"]["outputs"][0]["dtype"] == "float32"
    for key, variant in sidecar["variants"].items():
        data = _read(out / variant["file"])
        assert variant["sha256"] == hashlib.sha256(data).hexdigest()
        assert variant["bytes"] == report["variants"][key]["bytes"]


def test_embedded_metadata_leaves_the_model_unchanged(written, data):
    model, out, _ = written
    tflite = _read(out / "model_int8.tflite")
    embedded = json.loads(metadata(tflite)[android.METADATA_NAME])
    assert embedded["labels"] == LABELS
    assert embedded["normalization"]["std"] == [63.75]
    plain = convert_app_io(model, data, io="uint8", input_range=(-2.0, 2.0))
    assert android.METADATA_NAME not in metadata(plain)
    np.testing.assert_array_equal(litert.run(tflite, data).raw_outputs,
                                  litert.run(plain, data).raw_outputs)


def test_qat_model_has_the_float_model_signature(tmp_path, data):
    float_report = android.write_android(_model(), data, tmp_path / "f",
                                         embed=False)
    qat = tfcompress.quantize(_model())
    qat_report = android.write_android(qat, data, tmp_path / "q",
                                       embed=False)
    assert qat_report["signature"] == float_report["signature"]
    for file in ("model_int8.tflite", "model_fp16.tflite"):
        f = flatbuffer.read(_read(tmp_path / "f" / file)).signatures
        q = flatbuffer.read(_read(tmp_path / "q" / file)).signatures
        assert {k: sorted(v["inputs"]) + sorted(v["outputs"])
                for k, v in q.items()} == {
            k: sorted(v["inputs"]) + sorted(v["outputs"])
            for k, v in f.items()}


def test_multi_io_signature_check_and_keras_order():
    """Multi-input int8 calibration is not supported by convert_bytes yet;
    the signature check and the Keras-ordered I/O spec are, on float16."""
    keras.utils.set_random_seed(0)
    image = keras.Input((4, 4, 1), name="image")
    extra = keras.Input((2,), name="extra")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), extra])
    model = keras.Model([image, extra], [
        keras.layers.Dense(3, name="class_logits")(x),
        keras.layers.Dense(1, name="box")(x)])
    info = flatbuffer.read(convert_bytes(model, mode="float16"))
    inputs, outputs = android.keras_io_names(model)
    assert (inputs, outputs) == (["image", "extra"], ["class_logits", "box"])
    sig = android.check_signature(info, inputs, outputs, "multi")
    spec = android._io_spec(info, sig, inputs, "inputs")
    assert [(s["name"], s["shape"]) for s in spec] == [
        ("image", [1, 4, 4, 1]), ("extra", [1, 2])]
    with pytest.raises(android.ConversionError,
                       match=r"outputs \['box', 'class_logits'\] differ "
                             r"from the Keras outputs \['box', 'logits'\]"):
        android.check_signature(info, inputs, ["logits", "box"], "multi")


@pytest.mark.parametrize("kwargs,match", [
    ({"labels": ["a", "b"]}, "2 labels for output 'scores' with 3 classes"),
    ({"labels": "abc"}, "list of strings"),
    ({"labels": ["a", "b\nc", "d"]}, "spans lines"),
    ({"normalization": {"mean": 0.5}}, "normalization keys"),
    ({"normalization": {"mean": 0.5, "std": 0}}, "std .* has a zero"),
    ({"normalization": {"scale": [1, 2], "offset": [0, 0, 0]}},
     "scale has 2 values and offset 3"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, data, kwargs,
                                                  match):
    with pytest.raises(ValueError, match=match):
        android.write_android(_model(), data, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
