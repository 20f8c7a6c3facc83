"""Load a user's model file: Keras ``.keras`` / ``.h5`` or a SavedModel.

Code-carrying objects (Lambda layers, serialized Python functions) are
refused unless the caller allows unsafe loading. Layers defined above this
package (the training wrappers of :mod:`tfcompress`) are made known with
:func:`register_custom_objects`, so a saved wrapped model loads here without
this layer importing the one above it.

Example:
    >>> from converters import load_model
    >>> model = load_model("model.h5")
"""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, Union

__all__ = ["custom_objects", "load_model", "register_custom_objects"]

_PROVIDERS: list = []


def register_custom_objects(provider: Callable[[], Dict[str, object]]) -> None:
    """Make ``provider()``'s ``{name: class}`` known to :func:`load_model`."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def custom_objects() -> Dict[str, object]:
    """Every registered custom object, merged."""
    merged: Dict[str, object] = {}
    for provider in _PROVIDERS:
        merged.update(provider())
    return merged


def load_model(path: Union[str, os.PathLike], *, allow_unsafe: bool = False):
    """Load a Keras model (``.keras``, ``.h5``) or a SavedModel directory.

    A Keras 3 ``.keras`` file is loaded by Keras 3 (a ``keras.Model``);
    ``.h5`` and tf_keras ``.keras`` files by tf_keras. Wrapped models
    (pruned, clustered, QAT) load too. Custom layers load once their module
    is imported (:func:`converters.loading.user_modules.import_modules`).
    Lambda layers and other code-carrying objects are refused unless
    ``allow_unsafe=True``, in every format.
    """
    from converters.loading.kerasenv import keras

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path!r} is a directory but not a SavedModel "
                             "(no saved_model.pb); pass a .keras/.h5 file")
        return path  # converted with from_saved_model
    from converters.loading.generation import file_generation
    from converters.loading.user_modules import imported_custom_objects
    objects = {**custom_objects(), **imported_custom_objects()}
    if file_generation(path) == 3:  # saved by Keras 3: Keras 3 loads it
        from converters.loading import keras3_models
        return keras3_models.load(path, allow_unsafe=allow_unsafe,
                                  custom_objects=objects)
    kwargs = {"compile": True}
    if path.endswith(".keras"):
        kwargs["safe_mode"] = not allow_unsafe
    elif path.endswith((".h5", ".hdf5")) and not allow_unsafe:
        code = _h5_code_layers(path)  # tf_keras has no safe_mode for .h5
        if code:
            raise ValueError(
                f"{path}: the model contains code ({code[0]}) and is refused "
                "in safe mode; pass --unsafe / allow_unsafe=True only if you "
                "trust the file")
    try:
        with keras.utils.custom_object_scope(objects):
            return keras.models.load_model(path, **kwargs)
    except ValueError as exc:
        msg = str(exc).splitlines()[0]
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ValueError(
                f"{path}: the model contains code (e.g. a Lambda layer) and "
                "is refused in safe mode; pass --unsafe / allow_unsafe=True "
                "only if you trust the file") from None
        if "quantize_layer" in msg and path.endswith(".keras"):
            raise ValueError(
                f"{path}: tfmot QAT models do not reload from the .keras "
                "format; save the QAT model with model.save('model.h5') "
                "and pass the .h5 file") from None
        unknown = _UNKNOWN_LAYER.search(msg)
        if unknown:
            raise ValueError(
                f"{path}: the model uses the layer class {unknown.group(1)!r},"
                " which is not known; pass --import MODULE (the module that "
                "registers it with register_keras_serializable or lists it "
                "in CUSTOM_OBJECTS)") from None
        raise ValueError(f"{path}: cannot load Keras model: {msg}") from None


_UNKNOWN_LAYER = re.compile(r"Unknown (?:layer|object)[^']*'([\w.>]+)'")


#: config keys whose value names how a serialized Python function is stored
_FUNCTION_TYPES = ("function_type", "output_shape_type")


def _h5_code_layers(path: str) -> list:
    """Code-carrying objects in an .h5 model's ``model_config`` JSON:
    ``["Lambda layer 'double'", ...]`` (Lambda layers, and any config that
    stores a Python function as bytecode). Read without deserializing."""
    import json

    import h5py
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 Keras model "
                         f"({exc})") from None
    if raw is None:
        return []
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return ["an unreadable model_config"]
    found: list = []

    def walk(node) -> None:
        if isinstance(node, dict):
            conf = node.get("config")
            name = conf.get("name") if isinstance(conf, dict) else None
            if node.get("class_name") == "Lambda":
                found.append(f"Lambda layer {name!r}")
                return
            if any(node.get(k) == "lambda" for k in _FUNCTION_TYPES):
                found.append(f"a serialized Python function in "
                             f"{node.get('name', 'a config')!r}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found
