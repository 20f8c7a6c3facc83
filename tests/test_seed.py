"""``--seed`` makes an ``optimize`` run reproducible: the same seed gives
the same training history and a bit-identical .tflite (TensorFlow on CPU:
its kernels are deterministic for a fixed thread count, and every random
draw -- shuffling, k-means++ centroids, initializers -- comes from the
seeded generators); another seed gives another model, so the seed really
drives the training."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import classification_data, compile_clf, small_cnn
from tfcompress.pipeline import jobs

#: one stage with both random draws: k-means++ centroids and shuffling
RECIPE = {"stages": [{"cluster": {"clusters": 8, "epochs": 2}}],
          "fit": {"batch_size": 32, "verbose": 0}}


@pytest.fixture(scope="module")
def trained():
    x, y = classification_data(np.random.default_rng(0), n=160)
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=3, verbose=0)
    return model, x, y


def _run(trained, seed):
    model, x, y = trained
    art = jobs.optimize(model, x, y, RECIPE, target="android", seed=seed,
                        max_accuracy_drop=None)
    losses = [s["history"]["loss"] for s in art.report["stages"]]
    return hashlib.sha256(bytes(art.tflite)).hexdigest(), losses


def test_same_seed_same_bytes_other_seed_other_model(trained):
    first, second, other = (_run(trained, 7), _run(trained, 7),
                            _run(trained, 8))
    assert first[1] == second[1]           # every epoch's loss, exactly
    assert first[0] == second[0]           # the .tflite, bit for bit
    assert other[1] != first[1] and other[0] != first[0]


@pytest.mark.slow
def test_cli_runs_in_two_processes_ship_identical_files(tmp_path):
    """The whole pipeline (prune -> cluster -> PCQAT, micro target with
    its encoded model and C source) twice, each in a fresh process."""
    x, y = classification_data(np.random.default_rng(0), n=200)
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=3, verbose=0)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "r.yaml").write_text(
        "stages:\n  - prune: {target_sparsity: 0.5, epochs: 2}\n"
        "  - cluster: {clusters: 8, epochs: 1}\n  - quantize: {epochs: 1}\n"
        "fit: {batch_size: 32, verbose: 0}\n")
    files = ("model.rejected.tflite", "model.tflite", "model_ptq.tflite",
             "model_data.cc")
    found = []
    for run in ("a", "b"):
        out = tmp_path / run
        subprocess.run([
            sys.executable, "-m", "tfcompress.cli", "--quiet", "optimize",
            str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"),
            "--recipe", str(tmp_path / "r.yaml"), "--target", "micro",
            "--out", str(out), "--seed", "3"], check=False,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True, timeout=600)
        found.append({f: hashlib.sha256((out / f).read_bytes()).hexdigest()
                      for f in files if (out / f).exists()})
    assert found[0] and any(f.endswith(".tflite") and f != "model_ptq.tflite"
                            for f in found[0])
    assert found[0] == found[1]
