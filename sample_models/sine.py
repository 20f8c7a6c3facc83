"""``sine``: TensorFlow Lite Micro's hello_world model.

1,000 points x uniform in [0, 2*pi], y = sin(x) plus a little noise, and the
same network: Dense16-relu, Dense16-relu, Dense1 (321 parameters).
"""

from __future__ import annotations

import math

import numpy as np

from tfcompress.keras2.env import keras

NAME = "sine"
SAMPLES = 1000
SEED = 1337  # the seed TFLM's hello_world notebook uses


def load_data(seed: int = SEED):
    """``(x_train, y_train), (x_test, y_test)``; 60/20/20 split as TFLM,
    the 20% validation part folded into training; x is float32 [N, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2 * math.pi, SAMPLES).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal(SAMPLES)).astype(np.float32)
    split = int(0.8 * SAMPLES)
    return ((x[:split, None], y[:split, None]),
            (x[split:, None], np.sin(x[split:, None]).astype(np.float32)))


def build_model(seed: int = SEED) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((1,), name="x"),
        keras.layers.Dense(16, activation="relu", name="dense_1"),
        keras.layers.Dense(16, activation="relu", name="dense_2"),
        keras.layers.Dense(1, name="y"),
    ], name=NAME)


def compile_model(model: keras.Model, learning_rate: float = 1e-2) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="mse", metrics=["mae"])


EPOCHS = 150
BATCH_SIZE = 64
LABELS = None
RECIPE = None
NORMALIZATION = None
