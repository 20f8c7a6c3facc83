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
import re
import tempfile
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

    A Keras 3 ``.keras`` file is loaded by Keras 3 (a ``keras.Model``);
    ``.h5`` and tf_keras ``.keras`` files by tf_keras. Wrapped models
    (pruned, clustered, QAT) load too. Custom layers load once their module
    is imported (:func:`converters.loading.user_modules.import_modules`).
    Lambda layers and other code-carrying objects are refused unless
    ``allow_unsafe=True``, in every format.
    """
    from converters.loading.codescan import check_safe
    from converters.loading.formats import HDF5, SAVED_MODEL

    path = os.fspath(path)
    fmt = check_safe(path, allow_unsafe)  # content decides, never the name
    if allow_unsafe:
        _allow_code_later()
    if fmt == SAVED_MODEL:
        return path  # converted with from_saved_model
    from converters.loading.generation import file_generation
    from converters.loading.user_modules import imported_custom_objects
    objects = imported_custom_objects()
    with _named_for(path, fmt) as source:
        if fmt != HDF5 and file_generation(path) == 3:  # Keras 3 loads it
            from converters.loading import keras3_models
            with load_scope():
                return keras3_models.load(source, allow_unsafe=allow_unsafe,
                                          custom_objects=objects,
                                          name=path)
        return _load_keras(path, source, fmt, allow_unsafe, objects)


def _allow_code_later() -> None:
    """The user trusts the file (``--unsafe``): the copies Keras makes of
    the model later (clone, wrap, strip) may rebuild its Lambda layers too,
    in either Keras."""
    from converters.loading import kerasenv  # noqa: F401  (TF first)
    import keras
    keras.config.enable_unsafe_deserialization()
    from tf_keras.src.saving import serialization_lib
    serialization_lib.enable_unsafe_deserialization()


@contextlib.contextmanager
def _named_for(path: str, fmt: str):
    """What tf_keras should open: an open HDF5 file (its loader then ignores
    the name), or for a zip a ``.keras`` name (a link) whatever the file is
    called, so tf_keras never picks its loader by the name."""
    from converters.loading.formats import HDF5
    if fmt == HDF5:
        import h5py
        with h5py.File(path, "r") as f:
            yield f
        return
    if path.endswith(".keras"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tfc-load-") as tmp:
        link = os.path.join(tmp, "model.keras")
        os.symlink(os.path.abspath(path), link)
        yield link


def _load_keras(path: str, source, fmt: str, allow_unsafe: bool,
                objects: dict):
    from converters.loading.formats import KERAS_ZIP
    from converters.loading.kerasenv import keras
    kwargs = {"compile": True}
    if fmt == KERAS_ZIP:
        kwargs["safe_mode"] = not allow_unsafe
    try:
        with load_scope(), keras.utils.custom_object_scope(objects):
            return keras.models.load_model(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure: one line
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ValueError(
                f"{path}: the model carries code (e.g. a Lambda layer) and "
                "is refused in safe mode; pass --unsafe / allow_unsafe=True "
                "only if you trust the file") from None
        if "quantize_layer" in msg and fmt == KERAS_ZIP:
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
        raise ValueError(f"{path}: cannot load Keras model: "
                         f"{type(exc).__name__}: {msg}") from None


_UNKNOWN_LAYER = re.compile(r"Unknown (?:layer|object)[^']*'([\w.>]+)'")
