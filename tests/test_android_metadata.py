"""TFLite Metadata for Android: task detection, the plan's checks, packing
(TFLITE_METADATA buffer + zip of associated files) and the I/O types."""

import io
import zipfile

import numpy as np
import pytest

from converters.conversion.app_io import convert_app_io, input_quantization
from converters.targets import android_metadata as meta
from converters.targets import android_plan, metadata_pack
from converters.tflite import flatbuffer
from converters.tflite.inspect import metadata as entries
from tfcompress.keras2.env import keras

Spec = android_plan.TensorSpec


def _shapes(inputs, outputs):
    return android_plan._Shapes([Spec(f"in{i}", s, d)
                                 for i, (s, d) in enumerate(inputs)],
                                [Spec(f"out{i}", s, "FLOAT32")
                                 for i, s in enumerate(outputs)])


@pytest.mark.parametrize("inputs,outputs,rate,task", [
    ([([1, 32, 32, 3], "FLOAT32")], [[1, 10]], None, "image_classifier"),
    ([([1, 28, 28, 1], "FLOAT32")], [[1, 28, 28, 4]], None,
     "image_segmenter"),
    ([([1, 64, 64, 3], "FLOAT32")], [[1, 10, 4], [1, 10], [1, 10], [1]],
     None, "object_detector"),
    ([([1, 16000], "FLOAT32")], [[1, 5]], 16000, "audio_classifier"),
    ([([1, 16000], "FLOAT32")], [[1, 5]], None, "generic"),  # no rate
    ([([1, 40], "INT32")], [[1, 2]], None, "text_classifier"),
    ([([1, 8], "FLOAT32")], [[1, 1]], None, "generic"),
    ([([1, 4, 4, 5], "FLOAT32")], [[1, 3]], None, "generic"),  # 5 channels
])
def test_task_detection_from_shapes(inputs, outputs, rate, task):
    shapes = _shapes(inputs, outputs)
    assert meta.detect_task(shapes, sample_rate=rate) == task
    meta.check_task(task, shapes, sample_rate=rate)


@pytest.mark.parametrize("task,inputs,outputs,rate,match", [
    ("image_classifier", [([1, 8], "FLOAT32")], [[1, 3]], None,
     r"needs an image input \[1, H, W, 1\|3\]; input 'in0' has shape \[1, 8\]"),
    ("audio_classifier", [([1, 800], "FLOAT32")], [[1, 3]], None,
     "pass --sample-rate"),
    ("object_detector", [([1, 8, 8, 3], "FLOAT32")], [[1, 3]], None,
     "needs 4 output"),
    ("bogus", [([1, 8], "FLOAT32")], [[1, 3]], None, "unknown task"),
])
def test_a_task_that_does_not_fit_is_one_line(task, inputs, outputs, rate,
                                              match):
    with pytest.raises(ValueError, match=match):
        meta.check_task(task, _shapes(inputs, outputs), sample_rate=rate)


def _image_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3), name="photo")
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(
        3, activation="softmax", name="probs")(h))


@pytest.fixture(scope="module")
def image_model():
    return _image_model()


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(
        0, 256, (24, 6, 6, 3)).astype(np.float32)


def test_plan_defaults_and_checks(image_model, pixels):
    plan = android_plan.plan(image_model, pixels / 255.0,
                             normalization={"mean": 0, "std": 255})
    assert (plan.task, plan.io) == ("image_classifier", "uint8")
    assert plan.input_quantization == (pytest.approx(1 / 255), 0)
    assert plan.exact_pixels
    raw = android_plan.plan(image_model, pixels)  # raw pixels: (0, 1)
    assert raw.normalization["std"] == [1.0]
    assert raw.input_quantization == (pytest.approx(1.0), 0)
    # normalized data without --normalization: not an image classifier
    assert android_plan.plan(image_model, pixels / 255.0).task == "generic"
    with pytest.raises(ValueError, match="cannot be folded into one"):
        android_plan.plan(image_model, pixels / 255.0, normalization={
            "mean": [0, 0, 0], "std": [255, 128, 255]})
    with pytest.raises(ValueError, match=r"spans \[0, 255\] but "
                                         r"normalization mean 0 std 255"):
        android_plan.plan(image_model, pixels,
                          normalization={"mean": 0, "std": 255})
    with pytest.raises(ValueError, match="model metadata key 'owner'"):
        android_plan.plan(image_model, pixels, about={"owner": "x"})
    assert android_plan.plan(image_model, pixels,
                             task="classification").task == \
        "image_classifier"


@pytest.mark.parametrize("io,zero", [("uint8", 0), ("int8", -128)])
def test_quantized_image_input_is_the_pixel_grid(image_model, pixels, io,
                                                 zero):
    data = convert_app_io(image_model, pixels / 255.0, io=io,
                          input_range=(0.0, 1.0))
    info = flatbuffer.read(data)
    t = info.input_details[0]
    assert t.dtype == io.upper() and info.output_details[0].dtype == \
        io.upper()
    assert (t.scale[0], t.zero_point[0]) == (pytest.approx(1 / 255), zero)
    assert input_quantization((0.0, 1.0), io) == (pytest.approx(1 / 255),
                                                  zero)
    assert flatbuffer.float_ops(info) == []
    assert list(info.signatures) == ["serving_default"]


def test_populate_packs_metadata_and_files(image_model, pixels):
    data = convert_app_io(image_model, pixels / 255.0, io="uint8",
                          input_range=(0.0, 1.0))
    info = flatbuffer.read(data)
    md, files = meta.build(info, "image_classifier", labels=["a", "b", "c"],
                           normalization={"mean": [0.0], "std": [255.0]},
                           about=meta.About(name="m", license="MIT"))
    packed = metadata_pack.populate(data, md, files)
    # the flatbuffer first (interpreters read it), the zip after it
    assert packed.startswith(data[:8]) and zipfile.is_zipfile(
        io.BytesIO(packed))
    assert metadata_pack.associated_files(packed) == {
        "labels.txt": b"a\nb\nc\n"}
    assert metadata_pack.METADATA_NAME in entries(packed)
    got = metadata_pack.read(packed)
    assert got["min_parser_version"] == "1.0.0"
    assert (got["name"], got["license"]) == ("m", "MIT")
    graph = got["subgraph_metadata"][0]
    image = graph["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert image["stats"] == {"max": [255.0], "min": [0.0]}
    score = graph["output_tensor_metadata"][0]
    assert "probabilities (softmax)" in score["description"]
    assert score["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    # populating again replaces the entry (one TFLITE_METADATA, one zip)
    again = metadata_pack.populate(data, md, files)
    assert again == packed
    with pytest.raises(ValueError, match="names files"):
        metadata_pack.populate(data, md, {})


def test_audio_metadata_needs_parser_1_3():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as mfb
    md = mfb.ModelMetadataT()
    graph = mfb.SubGraphMetadataT()
    tensor = mfb.TensorMetadataT()
    tensor.content = mfb.ContentT()
    tensor.content.contentPropertiesType = \
        mfb.ContentProperties.AudioProperties
    graph.inputTensorMetadata = [tensor]
    md.subgraphMetadata = [graph]
    assert metadata_pack.min_parser_version(md) == "1.3.0"
    tensor.content.contentPropertiesType = \
        mfb.ContentProperties.ImageProperties
    assert metadata_pack.min_parser_version(md) == "1.0.0"
