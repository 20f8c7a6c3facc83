"""``digits``: a small CNN on scikit-learn's 8x8 handwritten digits.

The data are the real UCI digit images that ship inside scikit-learn
(``load_digits``; no download), scaled to [0, 1], with a fixed stratified
train/test split.
"""

from __future__ import annotations

import numpy as np

from tfcompress.keras2.env import keras

NAME = "digits"
TEST_SIZE = 0.2
SEED = 0


def load_data(seed: int = SEED):
    """``(x_train, y_train), (x_test, y_test)``; x is float32 [N, 8, 8, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=seed, stratify=y)
    return (x_tr, y_tr), (x_te, y_te)


def build_model(seed: int = SEED) -> keras.Model:
    """Conv16-Conv32-MaxPool-Dense64-Dense10 (logits), about 24k params."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu",
                            name="conv1")(inputs)
    h = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(64, activation="relu", name="fc1")(h)
    outputs = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(inputs, outputs, name=NAME)


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])


#: float training before compression
EPOCHS = 20
BATCH_SIZE = 32
LABELS = [str(i) for i in range(10)]
RECIPE = "pcqat"  # tfcompress/recipes/pcqat.yaml
NORMALIZATION = {"scale": 1 / 16.0, "offset": 0.0}  # raw 0..16 pixels
