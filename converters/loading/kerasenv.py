"""The one place the converters import TensorFlow and Keras 2 (``tf_keras``).

Models saved by ``tf_keras`` (``.h5``, tf_keras ``.keras``) and every model
the tensorflow-model-optimization path builds are ``tf_keras`` models; the
converters load and convert them with the same Keras. ``TF_USE_LEGACY_KERAS``
is set for this process only, before TensorFlow is imported
(quietly: :mod:`converters.loading.quiet`).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from converters.loading.quiet import import_tensorflow  # noqa: E402

tf = import_tensorflow()
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
