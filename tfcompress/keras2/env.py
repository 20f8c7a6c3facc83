"""The one place the Keras 2 techniques import Keras and tfmot.

tensorflow-model-optimization binds to Keras 2 (``tf_keras``); every module
of :mod:`tfcompress.keras2` imports ``keras``, ``tf`` and ``tfmot`` from here,
so the whole Keras 2 path (and the user, through ``tfcompress.keras``) builds
models with the same Keras as :mod:`converters.loading.kerasenv`.
"""

from converters.loading.kerasenv import keras, tf
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["keras", "tf", "tfmot"]
