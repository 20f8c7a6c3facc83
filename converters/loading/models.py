"""Load a user's model file: Keras ``.keras`` / ``.h5`` or a SavedModel.

Code-carrying objects (Lambda layers, serialized Python functions) are
refused unless the caller allows unsafe loading. Layers defined above this
package (the training wrappers of :mod:`tfcompress`) are made known with
:func:`register_scope` (a custom-object scope entered around every load), so
a saved wrapped model loads here without this layer importing the one above.

Example:
    >>> from converters import load_model
    >>> model = load_model("model.h5")
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, ContextManager, Union

__all__ = ["load_model", "load_scope", "register_scope"]

_SCOPES: list = []


def register_scope(factory: Callable[[], ContextManager]) -> None:
    """Enter ``factory()`` around every :func:`load_model` (e.g. a scope
    that knows the classes of saved wrapped models)."""
    if factory not in _SCOPES:
        _SCOPES.append(factory)


@contextlib.contextmanager
def load_scope():
    """Every registered scope, entered together."""
    with contextlib.ExitStack() as stack:
        for factory in _SCOPES:
            stack.enter_context(factory())
        yield


def load_model(path: Union[str, os.PathLike], *, allow_unsafe: bool = False):
    """Load a Keras model (``.keras``, ``.h5``) or a SavedModel directory.

    Wrapped models (pruned, clustered, QAT) load too. Lambda layers and other
    code-carrying objects are refused unless ``allow_unsafe=True``.
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
    if path.endswith(".keras"):
        from converters.loading import keras3_files as keras3
        if keras3.is_keras3_file(path):   # saved by Keras 3: rebuild
            return keras3.load(path)
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
        with load_scope():
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
        raise ValueError(f"{path}: cannot load Keras model: {msg}") from None


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
