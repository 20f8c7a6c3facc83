"""Which Keras generation a model file or a model object belongs to.

Keras 3 (``import keras``) saves ``.keras`` zips whose ``metadata.json``
says ``keras_version: 3.x``; tf_keras (Keras 2) saves ``.h5`` files and
``.keras`` zips with a 2.x version. The generation decides which Keras
loads the file and which training path a model takes; it is read from the
file's content, not from its name.

Example:
    >>> file_generation("model.keras")
    3
    >>> model_generation(model)
    2
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Optional

__all__ = ["file_generation", "is_keras3", "model_generation"]


def file_generation(path) -> Optional[int]:
    """3 for a Keras 3 ``.keras`` file, 2 for a tf_keras ``.keras``/``.h5``
    file, ``None`` for anything else (a SavedModel directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("metadata.json"))
        except (KeyError, ValueError, OSError):
            return None
        version = str(meta.get("keras_version", ""))
        return 3 if version.startswith("3") else 2
    with open(path, "rb") as f:
        head = f.read(8)
    return 2 if head == b"\x89HDF\r\n\x1a\n" else None


def model_generation(model) -> int:
    """3 for a Keras 3 model or layer, 2 for a tf_keras one."""
    for klass in type(model).__mro__:
        root = klass.__module__.split(".")[0]
        if root == "keras":
            return 3
        if root == "tf_keras":
            return 2
    raise TypeError(f"{type(model).__name__} is not a Keras model")


def is_keras3(model) -> bool:
    """True for a Keras 3 model (``import keras``)."""
    try:
        return model_generation(model) == 3
    except TypeError:
        return False
