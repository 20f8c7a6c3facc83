"""Keras 3 ``.keras`` files: loaded by Keras 3 itself, or (opt-in, for the
tfmot-only techniques) rebuilt as tf_keras models with the same predictions."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from converters.loading import keras3_files as keras3
from tfcompress.keras2.env import keras

# Run by a child Python with Keras 3 (TF_USE_LEGACY_KERAS unset).
_SAVE = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    assert keras.__version__.startswith("3"), keras.__version__
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 12, 12, 3)).astype("float32")

    seq = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        keras.layers.SeparableConv2D(8, 3, padding="same"),
        keras.layers.ReLU(max_value=6.0),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.2),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.LayerNormalization(),
        keras.layers.Dense(4),
        keras.layers.Activation("softmax"),
    ], name="seq3")

    inp = keras.Input((12, 12, 3), name="image")
    a = keras.layers.Conv2D(6, 3, padding="same", name="c1")(inp)
    a = keras.layers.BatchNormalization(name="bn1")(a)
    a = keras.layers.Activation("relu")(a)
    b = keras.layers.Conv2D(6, 1, name="c2")(inp)
    s = keras.layers.Add()([a, b])
    c = keras.layers.Concatenate()([s, b])
    g = keras.layers.GlobalAveragePooling2D()(c)
    p = keras.layers.AveragePooling2D(3)(c)
    p = keras.layers.Reshape((-1,))(p)
    h = keras.layers.Concatenate()([g, p])
    h = keras.layers.Dense(10, activation="relu")(h)
    logits = keras.layers.Dense(3, name="logits")(h)
    fn = keras.Model(inp, logits, name="fn3")

    tokens = keras.Input((5,), dtype="int32", name="tokens")
    e = keras.layers.Embedding(20, 4)(tokens)
    e = keras.layers.Conv1D(4, 2)(e)
    e = keras.layers.GlobalAveragePooling1D()(e)
    emb = keras.Model(tokens, keras.layers.Dense(2)(e), name="emb3")
    ids = np.random.default_rng(1).integers(0, 20, size=(16, 5)).astype("int32")

    for model, data in ((seq, x), (fn, x), (emb, ids)):
        # non-trivial BatchNormalization statistics
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                n = layer.moving_mean.shape[0]
                layer.moving_mean.assign(np.linspace(-0.5, 0.5, n))
                layer.moving_variance.assign(np.linspace(0.5, 2.0, n))
        model.save(f"{out}/{model.name}.keras")
        np.save(f"{out}/{model.name}_x.npy", data)
        np.save(f"{out}/{model.name}_y.npy", model.predict(data, verbose=0))
''')


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    script = out / "save.py"
    script.write_text(_SAVE)
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("name,kind", [("seq3", keras.Sequential),
                                       ("fn3", keras.Model),
                                       ("emb3", keras.Model)])
def test_keras3_file_round_trips_with_identical_predictions(saved, name, kind):
    path = str(saved / f"{name}.keras")
    assert keras3.is_keras3_file(path)
    model = keras3.load(path)
    assert isinstance(model, kind) and model.name == name
    x = np.load(saved / f"{name}_x.npy")
    want = np.load(saved / f"{name}_y.npy")
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert type(model).__module__.startswith("tf_keras.")


def test_load_model_loads_keras3_files_with_keras3(saved):
    import keras as keras3_module
    from converters.loading.models import load_model
    model = load_model(str(saved / "fn3.keras"))
    assert isinstance(model, keras3_module.Model)   # not translated
    assert not isinstance(model, keras.Model)
    assert [l.name for l in model.layers if l.name in ("c1", "bn1", "logits")] == \
        ["c1", "bn1", "logits"]
    np.testing.assert_allclose(model.predict(np.load(saved / "fn3_x.npy"), verbose=0),
                               np.load(saved / "fn3_y.npy"), atol=1e-5, rtol=0)


def test_tf_keras_files_are_not_keras3(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(str(tmp_path / "m.keras"))
    assert not keras3.is_keras3_file(str(tmp_path / "m.keras"))


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_untranslatable_layer_is_named_in_one_line(saved, tmp_path):
    def unknown(config):
        config["config"]["layers"][1]["class_name"] = "GroupNormalization"

    def option(config):
        config["config"]["layers"][-1]["config"]["lora_rank"] = 4

    bad = str(tmp_path / "bad.keras")
    _rewrite(saved / "fn3.keras", bad, unknown)
    with pytest.raises(keras3.Keras3Error) as err:
        keras3.load(bad)
    msg = str(err.value)
    assert "layer 'c1' (GroupNormalization) cannot be translated" in msg
    assert "\n" not in msg
    _rewrite(saved / "fn3.keras", bad, option)
    with pytest.raises(keras3.Keras3Error,
                       match=r"layer 'logits' \(Dense\): option lora_rank=4"):
        keras3.load(bad)
