"""Shared fixtures: tiny seeded models and data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfcompress.keras2.env import keras  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def classification_data(rng, shape=(8, 8, 1), n=256, classes=4):
    """Learnable synthetic data: the label is the argmax of a fixed
    projection of the input."""
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(int(np.prod(shape)), classes))
    y = np.argmax(x.reshape(n, -1) @ w, axis=-1).astype(np.int64)
    return x, y


def small_cnn(classes=4, shape=(8, 8, 1), functional=True):
    keras.utils.set_random_seed(0)
    if functional:
        inp = keras.Input(shape, name="image")
        h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
        h = keras.layers.Flatten(name="flat")(h)
        h = keras.layers.Dense(32, activation="relu", name="fc")(h)
        out = keras.layers.Dense(classes, name="logits")(h)
        return keras.Model(inp, out, name="small_cnn")
    return keras.Sequential([
        keras.Input(shape, name="image"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(32, activation="relu", name="fc"),
        keras.layers.Dense(classes, name="logits")], name="small_cnn_seq")


def compile_clf(model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@pytest.fixture
def clf_data(rng):
    return classification_data(rng)


@pytest.fixture(scope="session")
def digits_data():
    from sample_models import digits
    return digits.load_data()


_RELIABILITY = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def reliability_counts(pytestconfig):
    """Counters the reliability/fuzz tests fill in; the terminal summary
    prints them (``malformed``: files fed to inspect/validate, ``crashes``:
    outcomes that were neither a result nor a one-line error, ``contained``:
    interpreter crashes turned into one line by the sandbox,
    ``bad_inputs``: bad data/model inputs tried)."""
    return pytestconfig.stash.setdefault(_RELIABILITY, {
        "malformed": 0, "crashes": 0, "contained": 0, "bad_inputs": 0})


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = config.stash.get(_RELIABILITY, None)
    if counts:
        terminalreporter.write_line(
            f"malformed files tried: {counts['malformed']}, crashes: "
            f"{counts['crashes']} (interpreter crashes contained in a child "
            f"process: {counts['contained']}); bad inputs tried: "
            f"{counts['bad_inputs']}")
