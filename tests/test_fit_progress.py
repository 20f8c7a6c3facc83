"""Fit stages show Keras' progress under a stage header that follows the CLI
verbosity; cluster-preserving QAT trains without "Gradients do not exist";
sensitivity sweeps show progress."""

import logging
import sys

import numpy as np
import pytest

import tfcompress as tfc
from converters import progress
from tfcompress.analysis import sensitivity
from tfcompress.keras2 import callbacks as cb
from tfcompress.keras2.env import keras
from tfcompress.pipeline.stages import compress
from conftest import classification_data, compile_clf, small_cnn

RECIPE = {"stages": [{"prune": {"target_sparsity": 0.5, "epochs": 1}},
                     {"cluster": {"clusters": 8, "epochs": 2}}],
          "fit": {"loss": "sparse_categorical_crossentropy",
                  "from_logits": True}}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def tf_log():
    handler = _Records()
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def _pcqat(x, y):
    keras.utils.set_random_seed(0)
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=1, verbose=0)
    clustered = tfc.strip_clustering(tfc.cluster(model, 4))
    qat = tfc.quantize(clustered, preserve="clusters")
    compile_clf(qat)
    return qat


def _missing(messages):
    return [m for m in messages if "Gradients do not exist" in m]


def test_pcqat_fit_has_no_missing_gradient_warning(tf_log):
    x, y = classification_data(np.random.default_rng(0), n=128)
    # without the fix tfmot's PCQAT kernels warn (the capture works)
    plain = _pcqat(x, y)
    plain.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    assert _missing(tf_log), "expected tfmot's warning without the fix"
    tf_log.clear()

    qat = _pcqat(x, y)
    names = [w.name for w in qat.weights]
    trainable = [w.name for w in qat.trainable_weights]
    cbs = tfc.callbacks_for(qat)
    assert any(isinstance(c, cb.FreezeAssignedKernels) for c in cbs)
    qat.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0,
            callbacks=cbs)
    assert _missing(tf_log) == []
    # weight lists (hence saved weight order) are as before the fit
    assert [w.name for w in qat.weights] == names
    assert [w.name for w in qat.trainable_weights] == trainable
    # same training as without the fix (the kernel never had a gradient)
    np.testing.assert_allclose(qat.predict(x[:32], verbose=0),
                               plain.predict(x[:32], verbose=0), atol=1e-5)
    # still cluster-preserving: at most 4 unique values per kernel
    stripped = tfc.strip(qat) if hasattr(tfc, "strip") else qat
    for layer in stripped.layers:
        k = getattr(layer, "kernel", None)
        if k is not None and k.shape.rank > 1:
            assert len(np.unique(k.numpy())) <= 4, layer.name


@pytest.mark.parametrize("level,tty,expected", [
    (0, True, 0), (0, False, 0), (1, True, 1), (1, False, 2),
    (2, True, 2), (3, False, 2)])
def test_fit_verbose_follows_cli_verbosity(monkeypatch, level, tty, expected):
    monkeypatch.setenv(progress.ENV_LEVEL, str(level))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert progress.fit_verbose() == expected


def test_stages_print_a_header_and_one_line_per_epoch(monkeypatch, capfd):
    x, y = classification_data(np.random.default_rng(1), n=96)
    model = compile_clf(small_cnn())
    monkeypatch.setenv(progress.ENV_LEVEL, "1")  # pytest's stderr: no tty
    compress(model, (x, y), None, RECIPE)
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert "stage 1/2: prune (50% sparsity, 1 epoch)" in lines
    assert "stage 2/2: cluster (8 clusters, 2 epochs)" in lines
    assert lines.index("stage 1/2: prune (50% sparsity, 1 epoch)") < \
        lines.index("stage 2/2: cluster (8 clusters, 2 epochs)")
    text = out + err
    # verbose=2: one summary line per epoch (1 + 2 epochs)
    assert len([l for l in text.splitlines() if "/epoch" in l]) == 3
    assert "Epoch 2/2" in text
    assert "[====" not in text  # no in-place bar in a log

    monkeypatch.setenv(progress.ENV_LEVEL, "0")
    compress(model, (x, y), None, RECIPE)
    out, err = capfd.readouterr()
    assert "stage 1/2" not in err and "/epoch" not in out + err


def test_sensitivity_sweep_shows_one_step_per_trial(monkeypatch, capfd):
    x, y = classification_data(np.random.default_rng(2), n=64)
    model = compile_clf(small_cnn())
    monkeypatch.setenv(progress.ENV_LEVEL, "1")
    sens = sensitivity.analyze(model, x, y, sparsities=(0.5, 0.8),
                               clusters=(8,))
    trials = sum(len(r["prune"]) + len(r["cluster"]) for r in sens.layers)
    assert trials >= 4
    err = capfd.readouterr().err
    assert f"sensitivity sweep ({trials:,} trials) ..." in err
    assert f"sensitivity sweep: {trials:,} trials in" in err
