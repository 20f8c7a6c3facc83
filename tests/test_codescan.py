"""No code from a model file runs without ``--unsafe``, whatever its name.

Each model below carries code that writes a canary file when it runs. The
format is told from the content (a Lambda ``.h5`` renamed ``.keras``, a
``.keras`` zip renamed ``.h5``, no extension at all), nested models and
Keras 3 archives included; ``convert`` refuses each in one line and the
canary stays unwritten. The control test shows the canary does get written
when the same file is loaded with ``allow_unsafe=True``.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from converters import load_model
from converters.loading import codescan, formats
from tfcompress.cli.main import main
from tfcompress.keras2.env import keras, tf

_KERAS3_FIXTURES = textwrap.dedent("""
    import os, sys
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    import keras
    folder, canary = sys.argv[1], sys.argv[2]
    inp = keras.Input((4,))
    h = keras.layers.Lambda(lambda t, p=canary: (open(p, "w").close(), t)[1],
                            name="write_canary", output_shape=(4,))(inp)
    keras.Model(inp, keras.layers.Dense(2)(h)).save(f"{folder}/k3_lambda.keras")
    inner = keras.Model(inp, h, name="inner")
    i2 = keras.Input((4,))
    keras.Model(i2, keras.layers.Dense(2)(inner(i2))).save(
        f"{folder}/k3_nested.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        2, activation=lambda x: x * 2.0)]).save(f"{folder}/k3_activation.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(
        f"{folder}/k3_plain.keras")
""")


def _canary_lambda(canary: str):
    return keras.layers.Lambda(
        lambda t, p=canary: (open(p, "w").close(), t)[1], name="write_canary")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Model files that carry code (and plain ones), by name."""
    root = tmp_path_factory.mktemp("codescan")
    canary = str(root / "canary")
    out = {"root": root, "canary": canary}
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    lam = keras.Model(inp, keras.layers.Dense(2)(_canary_lambda(canary)(inp)))
    lam.save(root / "lambda.h5")
    lam.save(root / "lambda.keras")
    inner = keras.Model(inp, _canary_lambda(canary)(inp), name="inner")
    i2 = keras.Input((4,))
    keras.Model(i2, keras.layers.Dense(2)(inner(i2))).save(
        root / "nested.h5")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.save(root / "plain.h5")
    plain.save(root / "plain.keras")
    i3 = keras.Input((4,))
    tfop = keras.Model(i3, keras.layers.Dense(2)(tf.math.multiply(i3, 2.0)))
    tfop.save(root / "tfop.h5")
    module = tf.Module()
    module.f = tf.function(
        lambda x: tf.numpy_function(lambda v: v, [x], tf.float32),
        input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(root / "pyfunc_savedmodel"))
    script = root / "make_keras3.py"  # a file: Keras 3 reads lambda sources
    script.write_text(_KERAS3_FIXTURES)
    subprocess.run([sys.executable, str(script), str(root), canary],
                   check=True, capture_output=True,
                   env={k: v for k, v in os.environ.items()
                        if k != "TF_USE_LEGACY_KERAS"})
    disguises = {"lambda_h5_as.keras": "lambda.h5",
                 "lambda_keras_as.h5": "lambda.keras",
                 "lambda_no_extension": "lambda.h5",
                 "k3_lambda_as.h5": "k3_lambda.keras",
                 "plain_h5_as.keras": "plain.h5",
                 "plain_keras_as.h5": "plain.keras",
                 "plain_no_extension": "plain.keras"}
    for new, old in disguises.items():
        shutil.copy(root / old, root / new)
    if os.path.exists(canary):  # building the Keras 2 models ran the lambdas
        os.remove(canary)
    np.savez(root / "d.npz", x=np.ones((8, 4), np.float32))
    return out


CODE = [  # file, what the one line names
    ("lambda.h5", "Lambda layer 'write_canary'"),
    ("lambda_h5_as.keras", "Lambda layer 'write_canary'"),
    ("lambda_keras_as.h5", "Lambda layer 'write_canary'"),
    ("lambda_no_extension", "Lambda layer 'write_canary'"),
    ("nested.h5", "Lambda layer 'write_canary'"),
    ("k3_lambda.keras", "Lambda layer 'write_canary'"),
    ("k3_lambda_as.h5", "Lambda layer 'write_canary'"),
    ("k3_nested.keras", "Lambda layer 'write_canary'"),
    ("k3_activation.keras", "serialized Python bytecode"),
    ("pyfunc_savedmodel", "PyFunc op"),
]


@pytest.mark.parametrize("name,words", CODE, ids=[c[0] for c in CODE])
def test_convert_refuses_code_in_one_line_and_runs_none(files, name, words):
    path = str(files["root"] / name)
    out = files["root"] / f"out_{name}"
    result = CliRunner().invoke(main, ["convert", path, "--data",
                                       str(files["root"] / "d.npz"),
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert path in lines[0] and "carries code" in lines[0] and words in \
        lines[0] and "--unsafe" in lines[0], lines[0]
    assert not os.path.exists(files["canary"])
    assert not out.exists()


def test_the_canary_is_written_when_unsafe_loading_is_allowed(files):
    """The control: the same disguised file does run its code when the
    user allows it, so the refusals above are what kept the canary away."""
    path = str(files["root"] / "lambda_h5_as.keras")
    assert formats.detect(path) == formats.HDF5
    model = load_model(path, allow_unsafe=True)
    assert os.path.exists(files["canary"])
    os.remove(files["canary"])
    np.testing.assert_allclose(model.predict(np.ones((1, 4)), verbose=0).shape,
                               (1, 2))


@pytest.mark.parametrize("name,fmt", [
    ("plain_h5_as.keras", formats.HDF5), ("plain_keras_as.h5",
                                           formats.KERAS_ZIP),
    ("plain_no_extension", formats.KERAS_ZIP), ("tfop.h5", formats.HDF5),
    ("k3_plain.keras", formats.KERAS_ZIP)])
def test_models_without_code_load_whatever_their_name(files, name, fmt):
    path = str(files["root"] / name)
    assert codescan.check_safe(path) == fmt
    if not name.startswith("k3"):  # Keras 3 files load in a Keras 3 process
        assert load_model(path).count_params() in (10, 10 + 0)


def _tfop_calling(src: str, dst: str, function: str) -> None:
    import h5py
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][1]["config"]["function"] = function
        f.attrs["model_config"] = json.dumps(config)


def test_tfoplambda_may_call_tensor_math_only(files):
    root = files["root"]
    _tfop_calling(root / "tfop.h5", root / "tfop_io.h5", "io.write_file")
    with pytest.raises(codescan.UnsafeModelError,
                       match=r"TFOpLambda layer .* calling tf.io.write_file"):
        codescan.check_safe(str(root / "tfop_io.h5"))
    _tfop_calling(root / "tfop.h5", root / "tfop_pyfn.h5", "py_function")
    with pytest.raises(codescan.UnsafeModelError, match="tf.py_function"):
        codescan.check_safe(str(root / "tfop_pyfn.h5"))


def test_custom_objects_from_untrusted_modules_are_code(files):
    config = {"module": "keras", "class_name": "Sequential", "config": {
        "name": "s", "layers": [{"module": "os", "class_name": "function",
                                 "config": "system",
                                 "registered_name": "function"}]}}
    found = codescan.scan_config(config)
    assert found and "module 'os'" in found[0], found
    assert codescan.scan_config({"module": "keras.layers",
                                 "class_name": "Dense",
                                 "config": {"name": "d"}}) == []


def _zip(path, members: dict) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def test_broken_files_are_one_line_naming_them(files):
    root = files["root"]
    good = (root / "plain.keras").read_bytes()
    cases = {
        "empty.keras": b"",
        "truncated.keras": good[:300],
        "notes.keras": b"just some text, not a model",
        "model.tflite": b"\x1c\0\0\0TFL3" + bytes(64),
    }
    paths = {n: root / n for n in cases}
    for name, data in cases.items():
        paths[name].write_bytes(data)
    paths["empty_zip.keras"] = _zip(root / "empty_zip.keras", {})
    paths["no_config.keras"] = _zip(root / "no_config.keras",
                                    {"metadata.json": "{}"})
    paths["bad_json.keras"] = _zip(root / "bad_json.keras",
                                   {"config.json": "{not json"})
    os.makedirs(root / "not_a_savedmodel", exist_ok=True)
    paths["not_a_savedmodel"] = root / "not_a_savedmodel"
    runner = CliRunner()
    for name, path in paths.items():
        result = runner.invoke(main, ["convert", str(path), "--data",
                                      str(root / "d.npz"), "--out",
                                      str(root / "out_broken")])
        assert result.exit_code == 1, (name, result.output)
        assert result.exception is None or isinstance(result.exception,
                                                      SystemExit), name
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(path) in lines[0], (name, lines)
