"""Load a Keras 3 ``.keras`` file with Keras 3 itself.

Every layer Keras 3 knows loads (recurrent, attention, preprocessing,
``keras.applications`` activations); custom layers load when the module that
registers them was imported (:mod:`converters.loading.user_modules`).
Lambda layers and other code in the file are refused unless
``allow_unsafe``. Keras 3 and tf_keras live side by side in one process:
``TF_USE_LEGACY_KERAS`` only decides what ``tf.keras`` is, while ``import
keras`` is always Keras 3, and the TFLite converter converts either.

Example:
    >>> model = load("model.keras")       # a keras.Model (Keras 3)
"""

from __future__ import annotations

import re

__all__ = ["load"]

_UNKNOWN = re.compile(r"[Cc]ould not (?:locate|deserialize) (?:class|function)"
                      r" '?([\w.>]+)'?")


def load(path: str, *, allow_unsafe: bool = False, custom_objects=None,
         name: str = None):
    """The Keras 3 model saved at ``path`` (compiled when it was saved
    compiled); ``name`` is the file the user gave, for messages.

    Raises:
        ValueError: one line naming the file and the layer or class that
            stops loading, and what to pass.
    """
    from converters.loading import kerasenv  # noqa: F401  (TF first)
    import keras

    try:
        return keras.saving.load_model(path, compile=True,
                                       safe_mode=not allow_unsafe,
                                       custom_objects=custom_objects)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds
        raise ValueError(_explain(name or path, exc)) from None


def _explain(path: str, exc: Exception) -> str:
    text = str(exc)
    if "safe_mode" in text or "Lambda" in text and "unsafe" in text:
        lam = re.search(r"Lambda[^']*'(\w+)'", text)
        what = f"Lambda layer {lam.group(1)!r}" if lam else "a Lambda layer"
        return (f"{path}: the model contains code ({what}) and is refused in "
                "safe mode; pass --unsafe / allow_unsafe=True only if you "
                "trust the file")
    unknown = _UNKNOWN.search(text)
    if unknown:
        return (f"{path}: the model uses the class {unknown.group(1)!r}, which "
                "is not registered; pass --import MODULE (the module that "
                "defines it with keras.saving.register_keras_serializable)")
    first = next((line for line in text.splitlines() if line.strip()),
                 type(exc).__name__)
    return f"{path}: cannot load the Keras 3 model: {first.strip()}"
