"""A zoo of 14 ordinary models, as users bring them, with learnable data.

Each builder takes the Keras module (Keras 3 ``keras`` or Keras 2
``tf_keras``) and a width factor, and returns ``(model, data)`` where
``data`` is what ``DATA.npz`` holds: one array per input (``x`` for one
input, else the input names) and one target per output (``y``, else the
output names). The models are trained for one epoch and saved as
``NAME.keras`` (Keras 3) or ``NAME.h5`` (tf_keras).

Build a generation in its own process (``TF_USE_LEGACY_KERAS`` decides
what ``tf.keras`` is, once per process)::

    python tests/zoo.py 3 build/zoo          # Keras 3 .keras files (small)
    python tests/zoo.py 2 build/zoo          # tf_keras .h5 files (small)
    python tests/zoo.py 3 build/zoo --full   # all 14, double width (slow)
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Dict, Tuple

import numpy as np

#: model name -> what the model is
MODELS = {
    "mobilenet_v2": "keras.applications.MobileNetV2, 32x32, alpha 0.35",
    "mobilenet_v3": "keras.applications.MobileNetV3Small, 32x32",
    "kws_conv1d": "Conv1D keyword spotter (49x10 MFCC)",
    "gru": "GRU sequence classifier",
    "lstm": "LSTM sequence classifier",
    "text_embedding": "Embedding text classifier (int32 token ids)",
    "transformer": "Transformer block (MultiHeadAttention + LayerNorm)",
    "two_io": "two inputs (image, meta), two outputs (class, score)",
    "autoencoder": "dense autoencoder, 64 in / 64 out",
    "segmentation": "Conv2DTranspose segmentation net, 2 classes per pixel",
    "custom": "registered custom layer (module zoo_layers)",
    "lambda": "Lambda layer (code in the file)",
    "normalization": "Normalization + Rescaling preprocessing",
    "plain_cnn": "plain CNN",
}
N = 192
_Builder = Callable[..., Tuple[object, Dict[str, np.ndarray]]]


def _labels(x: np.ndarray, classes: int, seed: int = 1) -> np.ndarray:
    """A learnable label planted in ``x`` (in place): each class adds its
    own fixed pattern (a per-channel offset and a spatial template), so
    every architecture here separates the classes with a wide margin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=len(x))
    channels = x.shape[-1]
    offsets = np.eye(classes, channels) if channels >= classes else \
        rng.normal(size=(classes, channels))
    spatial = rng.normal(size=(classes, *x.shape[1:]))
    x += (0.6 * offsets[y].reshape((len(x),) + (1,) * (x.ndim - 2)
                                   + (channels,))
          + 0.3 * spatial[y]).astype(x.dtype)
    return y.astype(np.int64)


def _images(rng, shape):
    return rng.uniform(0, 1, size=(N, *shape)).astype(np.float32)


def _clf(keras, model, x, y, **extra):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=False), metrics=["accuracy"])
    return model, {"x": x, "y": y, **extra}


def mobilenet_v2(keras, rng, w=1):
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
    x = _images(rng, (32, 32, 3))
    return _clf(keras, model, x, _labels(x, 4))


def mobilenet_v3(keras, rng, w=1):
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75 if w > 1 else 0.5, weights=None,
        classes=4, include_preprocessing=False, dropout_rate=0.0)
    x = _images(rng, (32, 32, 3))
    return _clf(keras, model, x, _labels(x, 4))


def kws_conv1d(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((49, 10), name="mfcc")
    h = L.Conv1D(8 * w, 3, activation="relu", name="conv1")(inp)
    h = L.MaxPooling1D(2, name="pool1")(h)
    h = L.Conv1D(8 * w, 3, activation="relu", name="conv2")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    out = L.Dense(4, activation="softmax", name="keyword")(h)
    x = rng.normal(size=(N, 49, 10)).astype(np.float32)
    return _clf(keras, keras.Model(inp, out, name="kws"), x, _labels(x, 4))


def _rnn(keras, rng, w, layer):
    L = keras.layers
    inp = keras.Input((12, 6), name="sequence")
    h = getattr(L, layer)(8 * w, name=layer.lower())(inp)
    out = L.Dense(3, activation="softmax", name="label")(h)
    x = rng.normal(size=(N, 12, 6)).astype(np.float32)
    return _clf(keras, keras.Model(inp, out, name=layer.lower()), x,
                _labels(x, 3))


def gru(keras, rng, w=1):
    return _rnn(keras, rng, w, "GRU")


def lstm(keras, rng, w=1):
    return _rnn(keras, rng, w, "LSTM")


def text_embedding(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((16,), dtype="int32", name="tokens")
    h = L.Embedding(50, 8 * w, name="embed")(inp)
    h = L.GlobalAveragePooling1D(name="pool")(h)
    h = L.Dense(16 * w, activation="relu", name="hidden")(h)
    out = L.Dense(3, activation="softmax", name="label")(h)
    x = rng.integers(0, 50, size=(N, 16)).astype(np.int32)
    y = (np.sum(x < 10, -1) > 3).astype(np.int64) + (
        np.sum(x > 40, -1) > 3).astype(np.int64)
    return _clf(keras, keras.Model(inp, out, name="text"), x, y)


def transformer(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((8, 16), name="tokens")
    a = L.MultiHeadAttention(2, 8 * w, name="mha")(inp, inp)
    h = L.LayerNormalization(name="ln1")(L.Add(name="res1")([inp, a]))
    f = L.Dense(32 * w, activation="relu", name="ffn1")(h)
    f = L.Dense(16, name="ffn2")(f)
    h = L.LayerNormalization(name="ln2")(L.Add(name="res2")([h, f]))
    h = L.GlobalAveragePooling1D(name="pool")(h)
    out = L.Dense(3, activation="softmax", name="label")(h)
    x = rng.normal(size=(N, 8, 16)).astype(np.float32)
    return _clf(keras, keras.Model(inp, out, name="transformer"), x,
                _labels(x, 3))


def two_io(keras, rng, w=1):
    L = keras.layers
    image = keras.Input((8, 8, 1), name="image")
    meta = keras.Input((4,), name="meta")
    h = L.Conv2D(4 * w, 3, activation="relu", name="conv")(image)
    h = L.Flatten(name="flat")(h)
    h = L.Concatenate(name="join")([h, L.Dense(8, name="meta_fc")(meta)])
    h = L.Dense(16 * w, activation="relu", name="fc")(h)
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    score = L.Dense(1, name="score")(h)
    model = keras.Model([image, meta], [cls, score], name="two_io")
    xi = _images(rng, (8, 8, 1))
    xm = rng.normal(size=(N, 4)).astype(np.float32)
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    return model, {"image": xi, "meta": xm, "cls": _labels(xi, 3),
                   "score": (xm @ np.array([1.0, -0.5, 0.25, 0.0])
                             ).astype(np.float32)[:, None]}


def autoencoder(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((64,), name="signal")
    h = L.Dense(16 * w, activation="relu", name="enc")(inp)
    h = L.Dense(8, activation="relu", name="code")(h)
    h = L.Dense(16 * w, activation="relu", name="dec")(h)
    out = L.Dense(64, name="recon")(h)
    base = np.sin(np.linspace(0, 6.28, 64))[None] * rng.uniform(
        0.5, 1.5, size=(N, 1))
    x = (base + 0.05 * rng.normal(size=(N, 64))).astype(np.float32)
    model = keras.Model(inp, out, name="autoencoder")
    model.compile("adam", "mse")
    return model, {"x": x, "y": x.copy()}


def segmentation(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((16, 16, 1), name="image")
    h = L.Conv2D(8 * w, 3, strides=2, padding="same", activation="relu",
                 name="down")(inp)
    h = L.Conv2D(8 * w, 3, padding="same", activation="relu", name="mid")(h)
    h = L.Conv2DTranspose(8 * w, 3, strides=2, padding="same",
                          activation="relu", name="up")(h)
    out = L.Conv2D(2, 1, activation="softmax", name="mask")(h)
    x = _images(rng, (16, 16, 1))
    y = (x[..., 0] > 0.5).astype(np.int64)
    return _clf(keras, keras.Model(inp, out, name="segmentation"), x, y)


def custom(keras, rng, w=1):
    import zoo_layers  # the user's module: registers ChannelScale
    scale = zoo_layers.ChannelScale[keras.__name__.split(".")[0]]
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(8 * w, 3, activation="relu", name="conv")(inp)
    h = scale(name="scale")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(3, activation="softmax", name="label")(h)
    x = _images(rng, (8, 8, 1))
    return _clf(keras, keras.Model(inp, out, name="custom"), x, _labels(x, 3))


def lambda_(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="image")
    h = L.Lambda(lambda t: t * 2.0 - 1.0, name="center")(inp)
    h = L.Conv2D(8 * w, 3, activation="relu", name="conv")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(3, activation="softmax", name="label")(h)
    x = _images(rng, (8, 8, 1))
    return _clf(keras, keras.Model(inp, out, name="lambda"), x, _labels(x, 3))


def normalization(keras, rng, w=1):
    L = keras.layers
    z = rng.normal(size=(N, 12)).astype(np.float32)
    y = _labels(z, 3)
    x = (z * 20 + 100).astype(np.float32)
    norm = L.Normalization(name="norm")
    norm.adapt(x)
    inp = keras.Input((12,), name="features")
    h = L.Rescaling(0.5, offset=0.1, name="rescale")(norm(inp))
    h = L.Dense(16 * w, activation="relu", name="fc")(h)
    out = L.Dense(3, activation="softmax", name="label")(h)
    return _clf(keras, keras.Model(inp, out, name="normalization"), x, y)


def plain_cnn(keras, rng, w=1):
    L = keras.layers
    inp = keras.Input((12, 12, 1), name="image")
    h = L.Conv2D(8 * w, 3, activation="relu", name="conv1")(inp)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Conv2D(8 * w, 3, activation="relu", name="conv2")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(4, activation="softmax", name="label")(h)
    x = _images(rng, (12, 12, 1))
    return _clf(keras, keras.Model(inp, out, name="plain_cnn"), x,
                _labels(x, 4))


BUILDERS: Dict[str, _Builder] = {
    name: globals()["lambda_" if name == "lambda" else name]
    for name in MODELS}


def _fit_args(model, data):
    names = [t.name.split(":")[0] for t in model.inputs]
    outs = list(model.output_names) if len(model.outputs) > 1 else []
    x = data["x"] if "x" in data else [data[n] for n in names]
    y = data["y"] if "y" in data else [data[n] for n in outs]
    return x, y


#: the tiny zoo of ``make test`` (the MobileNets run in the slow tier)
SMALL = tuple(n for n in MODELS if not n.startswith("mobilenet"))


def build(generation: int, out_dir: str, names=None, width: int = 1,
          epochs: int = 12) -> Dict[str, str]:
    """Build, train and save the zoo with the Keras of ``generation``
    (3: ``keras``, 2: ``tf_keras``) in this process; ``{name: path}``.
    Data is written beside each model as ``NAME.npz``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if generation == 2:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as keras
        ext = ".h5"
    else:
        import keras
        ext = ".keras"
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name in names or MODELS:
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        model, data = BUILDERS[name](keras, rng, width)
        x, y = _fit_args(model, data)
        model.fit(x, y, epochs=1 if name.startswith("mobilenet") else epochs,
                  batch_size=32, verbose=0)
        path = os.path.join(out_dir, name + ext)
        model.save(path)
        tmp = os.path.join(out_dir, f"{name}.{os.getpid()}.npz")
        np.savez(tmp, **data)     # both generations may write it at once
        os.replace(tmp, os.path.join(out_dir, name + ".npz"))
        paths[name] = path
    return paths


if __name__ == "__main__":
    gen, out = int(sys.argv[1]), sys.argv[2]
    full = "--full" in sys.argv
    only = [a for a in sys.argv[3:] if not a.startswith("--")]
    build(gen, out, names=only or (None if full else SMALL),
          width=2 if full else 1, epochs=20 if full else 12)
