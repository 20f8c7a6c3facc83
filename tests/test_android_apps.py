"""Android artifacts in the runtimes apps load them with: MediaPipe Tasks
(ImageClassifier, AudioClassifier) from the file alone, and the LiteRT
signature runner; each compared with the LiteRT interpreter."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters.runtimes import litert
from converters.targets import android, metadata_pack
from converters.tflite import flatbuffer
from tfcompress.cli.main import main
from tfcompress.keras2.env import keras

COLOURS = ["red", "green", "blue", "yellow"]
SAMPLE_RATE, CLIP = 8000, 800
TONES = ["low", "mid", "high"]


def _patches(n, seed):
    """32x32 RGB noise with a 10x10 patch whose colour is the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 90, (n, 32, 32, 3)).astype(np.uint8)
    rgb = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)])
    for i, c in enumerate(y):
        top, left = rng.integers(0, 22, 2)
        x[i, top:top + 10, left:left + 10] = rgb[c] * rng.integers(150, 256)
    return x, y


@pytest.fixture(scope="module", params=["tf_keras", "keras3"])
def rgb(tmp_path_factory, request):
    """An RGB CNN trained briefly (tf_keras, or Keras 3; saved as .keras),
    its data as the model sees it (pixel / 255), the raw pixels and
    labels.txt."""
    root = tmp_path_factory.mktemp("rgb")
    pixels, y = _patches(700, 0)
    if request.param == "keras3":
        import keras as k3
        keras = k3
    else:
        from tfcompress.keras2.env import keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(4, name="logits")(h))
    model.compile(keras.optimizers.Adam(5e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(pixels[:400] / 255.0, y[:400], epochs=10, batch_size=32,
              verbose=0)
    model.save(root / "rgb.keras")
    test_pixels, test_y = pixels[400:], y[400:]
    np.savez(root / "d.npz", x=(test_pixels / 255.0).astype(np.float32),
             y=test_y)
    (root / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    return {"root": root, "pixels": test_pixels, "y": test_y}


@pytest.fixture(scope="module")
def converted(rgb):
    out = rgb["root"] / "out"
    result = CliRunner().invoke(main, [
        "convert", str(rgb["root"] / "rgb.keras"),
        "--data", str(rgb["root"] / "d.npz"), "--target", "android",
        "--labels", str(rgb["root"] / "labels.txt"),
        "--normalization", "0,255", "--model-info", "author=ACME",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _image_classifier(path):
    from mediapipe.tasks.python import BaseOptions, vision
    return vision.ImageClassifier.create_from_options(
        vision.ImageClassifierOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            max_results=4))


def _mediapipe_vs_litert(path, pixels, feed):
    """MediaPipe's top-1 (index, name) per image and LiteRT's top-1 on the
    same file through the ``serving_default`` signature runner."""
    import mediapipe as mp
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=str(path)).get_signature_runner(
        "serving_default")
    classifier = _image_classifier(path)
    try:
        tops, lite = [], []
        for image in pixels:
            result = classifier.classify(mp.Image(
                image_format=mp.ImageFormat.SRGB,
                data=np.ascontiguousarray(image)))
            best = result.classifications[0].categories[0]
            tops.append((best.index, best.category_name))
            lite.append(int(np.argmax(runner(image=feed(image))["logits"])))
    finally:
        classifier.close()
    return tops, np.array(lite)


def test_cli_android_int8_loads_in_mediapipe_image_classifier(rgb,
                                                             converted):
    data = (converted / "model.tflite").read_bytes()
    assert data == (converted / "android" / "model_int8.tflite").read_bytes()
    info = flatbuffer.read(data)
    # int8 inside (weights and compute), uint8 pixels at the edges
    weights = [t for t in info.tensors if t.is_constant and len(t.shape) >= 2]
    assert weights and {t.dtype for t in weights} == {"INT8"}
    assert flatbuffer.float_ops(info) == []
    inp, out = info.input_details[0], info.output_details[0]
    assert (inp.dtype, out.dtype) == ("UINT8", "UINT8")
    # pixel p represents (p - 0) / 255 exactly: the normalization is folded
    assert (inp.scale[0], inp.zero_point[0]) == (pytest.approx(1 / 255), 0)
    assert list(info.signatures) == ["serving_default"]

    tops, lite = _mediapipe_vs_litert(converted / "model.tflite",
                                      rgb["pixels"], lambda p: p[None])
    index = np.array([t[0] for t in tops])
    assert np.mean(index == lite) >= 0.98
    assert [name for _, name in tops] == [COLOURS[i] for i in index]
    assert np.mean(index == rgb["y"]) >= 0.9  # the model did learn

    meta = metadata_pack.summary(data)
    assert meta["task"] == "image_classifier" and meta["author"] == "ACME"
    assert meta["inputs"][0]["normalization"] == {"mean": [0.0] * 3,
                                                  "std": [255.0] * 3}
    assert meta["outputs"][0]["labels"] == COLOURS
    report = json.loads((converted / "report.json").read_text())
    assert report["tflite"]["input"]["dtype"] == "uint8"
    assert report["validation"]["litert"]["agreement"] >= 0.98


def test_float16_variant_loads_with_normalization_options(rgb, converted):
    path = converted / "android" / "model_fp16.tflite"
    info = flatbuffer.read(path.read_bytes())
    assert info.input_details[0].dtype == "FLOAT32"
    tops, lite = _mediapipe_vs_litert(
        path, rgb["pixels"], lambda p: (p[None] / 255.0).astype(np.float32))
    assert np.mean(np.array([t[0] for t in tops]) == lite) >= 0.98
    assert {name for _, name in tops} <= set(COLOURS)


def test_inspect_shows_task_labels_and_normalization(converted):
    result = CliRunner().invoke(main, ["inspect",
                                       str(converted / "model.tflite")])
    assert result.exit_code == 0, result.output
    assert "TFLite Metadata: task image_classifier" in result.output
    assert "4 labels (labels.txt): red, green, blue, yellow" in result.output
    assert "std [255.0, 255.0, 255.0]" in result.output


def _one_line_error(result):
    assert result.exit_code != 0
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """A non-image model (8 features -> 3 scores) and its data."""
    root = tmp_path_factory.mktemp("features")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="features")
    model = keras.Model(inp, keras.layers.Dense(3, name="scores")(
        keras.layers.Dense(16, activation="relu")(inp)))
    model.save(root / "f.h5")
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    np.savez(root / "f.npz", x=x)
    return {"root": root, "model": model, "x": x}


@pytest.mark.parametrize("case,match", [
    ("labels", "3 labels for output 'logits' with 4 classes"),
    ("std", "std [0.0] has a zero"),
    ("io", "--io uint8 needs an image input [1, H, W, 1|3]; input "
           "'features' has shape [1, 8]"),
])
def test_bad_android_options_are_one_line_and_write_nothing(
        rgb, features, tmp_path, case, match):
    out = tmp_path / "out"
    args = ["convert", str(rgb["root"] / "rgb.keras"), "--data",
            str(rgb["root"] / "d.npz"), "--target", "android",
            "--out", str(out)]
    if case == "labels":
        (tmp_path / "three.txt").write_text("a\nb\nc\n")
        args += ["--labels", str(tmp_path / "three.txt")]
    elif case == "std":
        args += ["--normalization", "0,0"]
    else:
        args = ["convert", str(features["root"] / "f.h5"), "--data",
                str(features["root"] / "f.npz"), "--io", "uint8",
                "--out", str(out)]
    line = _one_line_error(CliRunner().invoke(main, args))
    assert match in line
    assert not out.exists()


def test_generic_model_in_the_litert_signature_runner(features, tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    report = android.write_android(features["model"], features["x"],
                                   tmp_path, about={"version": "3"})
    assert (report["plan"]["task"], report["plan"]["io"]) == ("generic",
                                                              "float32")
    path = tmp_path / report["variants"]["int8"]["file"]
    runner = Interpreter(model_path=str(path)).get_signature_runner(
        "serving_default")
    got = np.concatenate([runner(features=row[None])["scores"]
                          for row in features["x"]])
    np.testing.assert_array_equal(got, litert.run(path.read_bytes(),
                                                  features["x"]).outputs)
    want = features["model"].predict(features["x"], verbose=0)
    assert np.max(np.abs(got - want)) < 0.1 * np.ptp(want)
    meta = metadata_pack.summary(path.read_bytes())
    assert (meta["task"], meta["version"]) == ("generic", "3")
    assert [t["name"] for t in meta["inputs"] + meta["outputs"]] == [
        "features", "scores"]


def _tones(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(CLIP) / SAMPLE_RATE
    x = [0.5 * np.sin(2 * np.pi * (300, 1200, 3000)[c] * t + rng.uniform(0, 6))
         + 0.05 * rng.standard_normal(CLIP) for c in y]
    return np.array(x, np.float32), y


def test_audio_classifier_loads_in_mediapipe(tmp_path):
    from mediapipe.tasks.python import BaseOptions, audio
    from mediapipe.tasks.python.components.containers import audio_data
    x, y = _tones(400, 0)
    keras.utils.set_random_seed(0)
    inp = keras.Input((CLIP,), name="waveform")
    h = keras.layers.Reshape((CLIP, 1))(inp)
    h = keras.layers.Conv1D(8, 9, strides=4, activation="relu")(h)
    h = keras.layers.Conv1D(8, 9, strides=4, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, verbose=0)
    report = android.write_android(model, x[:200], tmp_path, labels=TONES,
                                   sample_rate=SAMPLE_RATE)
    assert (report["plan"]["task"], report["plan"]["io"]) == (
        "audio_classifier", "float32")
    path = tmp_path / report["variants"]["int8"]["file"]
    meta = metadata_pack.summary(path.read_bytes())
    assert meta["inputs"][0]["sample_rate"] == SAMPLE_RATE
    assert meta["outputs"][0]["labels"] == TONES
    assert meta["min_parser_version"] == "1.3.0"  # AudioProperties
    lite = litert.run(path.read_bytes(), x[200:]).outputs.argmax(-1)
    classifier = audio.AudioClassifier.create_from_options(
        audio.AudioClassifierOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            max_results=3))
    try:
        tops = [classifier.classify(audio_data.AudioData.create_from_array(
            clip, SAMPLE_RATE))[0].classifications[0].categories[0]
            for clip in x[200:]]
    finally:
        classifier.close()
    index = np.array([c.index for c in tops])
    assert np.mean(index == lite) >= 0.98
    assert [c.category_name for c in tops] == [TONES[i] for i in index]
    assert np.mean(lite == y[200:]) >= 0.9


def test_image_segmenter_loads_in_mediapipe(tmp_path):
    """Per-pixel classes: MediaPipe's category mask equals LiteRT's argmax
    (uint8 int8 variant and float16 variant), labels from the metadata."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    pixels, _ = _patches(24, 1)
    pixels = pixels[:, :16, :16]
    keras.backend.clear_session()   # the same weights whatever ran before
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(
        3, 1, activation="softmax", name="mask")(h))
    report = android.write_android(model, pixels / 255.0, tmp_path,
                                   labels=["bg", "warm", "cold"],
                                   normalization={"mean": 0, "std": 255})
    assert (report["plan"]["task"], report["plan"]["io"]) == (
        "image_segmenter", "uint8")
    for variant in ("int8", "fp16"):
        path = tmp_path / report["variants"][variant]["file"]
        segmenter = vision.ImageSegmenter.create_from_options(
            vision.ImageSegmenterOptions(
                base_options=BaseOptions(model_asset_path=str(path)),
                output_category_mask=True))
        try:
            assert segmenter.labels == ["bg", "warm", "cold"]
            masks = [segmenter.segment(mp.Image(
                image_format=mp.ImageFormat.SRGB,
                data=np.ascontiguousarray(image))).category_mask.numpy_view()
                for image in pixels[:8]]
        finally:
            segmenter.close()
        lite = litert.run(path.read_bytes(), pixels[:8] / 255.0).outputs
        got = np.stack(masks).reshape(lite.shape[:-1])
        top2 = np.sort(lite, -1)[..., -2:]
        # near ties (a few uint8 steps; MediaPipe's and LiteRT's kernels
        # may round one LSB apart) may break either way
        clear = top2[..., 1] - top2[..., 0] > 0.02
        assert clear.mean() > 0.5
        assert np.mean(got[clear] == lite.argmax(-1)[clear]) >= 0.98
