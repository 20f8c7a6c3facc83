"""The README's two Python examples run as written (Keras 3 first, tf_keras
second), each in its own process, on a small model the test provides."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: what the README's examples take as given: a model and data
_SETUP = textwrap.dedent('''
    import numpy as np
    {keras_import}
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    x = rng.normal(size=(600, 8, 8, 1)).astype("float32")
    x[np.arange(600), y, y, 0] += 6.0            # a learnable class mark
    x_test, y_test = x[-100:], y[-100:]
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(4)])
''')
_CHECK = textwrap.dedent('''
    import json
    rep = json.load(open("build/mymodel/report.json"))
    assert rep["tflite"]["input"]["dtype"] == "int8", rep["tflite"]["input"]
    assert rep["validation"]["micro"]["passed"], rep["validation"]
    assert rep["validation"]["litert"]["accuracy"] > 0.9, rep["validation"]
    dense = [r for r in rep["tflite"]["layers"] if r["shape"][0] == 16]
    assert dense and dense[0]["sparsity"] >= 0.74, rep["tflite"]["layers"]
''')


def _blocks():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _start(generation: int, folder) -> subprocess.Popen:
    blocks = [b for b in _blocks() if "artifact.save" in b]
    assert len(blocks) == 2, "README: a Keras 3 and a tf_keras example"
    code = blocks[0 if generation == 3 else 1]
    keras_import = ("import keras" if generation == 3 else
                    "from tfcompress import keras")
    assert keras_import in code
    script = _SETUP.format(keras_import=keras_import) + code + _CHECK
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_USE_LEGACY_KERAS", None)
    with open(folder / "stderr.txt", "w") as err:   # no pipe to fill
        return subprocess.Popen([sys.executable, "-c", script], cwd=folder,
                                env=env, stdout=subprocess.DEVNULL,
                                stderr=err)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both examples at once, each in its own process (two cores)."""
    folders = {g: tmp_path_factory.mktemp(f"readme{g}") for g in (3, 2)}
    procs = {g: (_start(g, folder), folder) for g, folder in folders.items()}
    yield procs
    for proc, _ in procs.values():
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("generation", [3, 2])
def test_readme_example_runs(generation, runs):
    proc, folder = runs[generation]
    proc.wait(timeout=600)
    assert proc.returncode == 0, (folder / "stderr.txt").read_text()[-3000:]
