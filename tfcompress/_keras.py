"""The one place that imports Keras.

tensorflow-model-optimization binds to Keras 2 (``tf_keras``); Keras 3 models
are rejected by it. Every module of the toolkit imports ``keras`` from here so
that the whole toolkit (and the user, through ``tfcompress.keras``) builds
models with the same Keras.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_keras as keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["keras", "tf", "tfmot"]
