"""Find code in a model file before anything deserializes it.

A Keras model file can carry Python: a ``Lambda`` layer's bytecode, a
serialized lambda (``__lambda__``, an activation stored as marshalled
bytecode), a ``TFOpLambda`` that names an arbitrary TensorFlow function, a
custom object that makes Keras import a module named by the file. A
SavedModel can call back into Python (``PyFunc`` ops). :func:`scan` reads
only the JSON config (zip or HDF5 attribute) or the SavedModel protobuf and
names each such object; :func:`check_safe` is what every loader calls
first: it picks the format from the content (:mod:`~converters.loading.formats`)
and refuses code unless the caller allows unsafe loading.

Example:
    >>> check_safe("model.keras", allow_unsafe=False)
    'keras_zip'
    >>> check_safe("lambda.h5", allow_unsafe=False)
    Traceback (most recent call last):
    UnsafeModelError: lambda.h5: the model carries code (Lambda layer 'double') ...
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import zipfile
from collections.abc import Iterable

from converters.loading import formats

__all__ = ["UnsafeModelError", "check_safe", "scan", "trust_module",
           "trusted_modules"]

#: modules a config may name for its objects (prefixes, at a dot boundary)
_TRUSTED = {"keras", "tf_keras", "tensorflow", "tensorflow_model_optimization",
            "tfcompress", "converters"}
#: TFOpLambda functions: TensorFlow namespaces of pure tensor math
_TF_NAMESPACES = {"math", "nn", "linalg", "image", "signal", "bitwise",
                  "__operators__", "random", "dtypes"}
#: top-level TensorFlow functions a TFOpLambda must not call
_TF_DENIED = {"py_function", "numpy_function", "py_func", "print", "Print",
              "load_op_library", "load_library", "function", "autograph",
              "init_scope", "Module", "Variable", "saved_model"}
#: SavedModel ops that call back into Python
_PY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
#: seconds the HDF5 library may take to read a file's attributes
H5_TIMEOUT = 30
#: largest config.json read from a zip (bytes, uncompressed)
MAX_CONFIG_BYTES = 64 << 20


class UnsafeModelError(ValueError):
    """The model file carries code and unsafe loading was not allowed."""


def trust_module(name: str) -> None:
    """Let configs name objects from ``name`` (a module the user imported,
    e.g. with ``--import``): its custom layers are no longer refused."""
    _TRUSTED.add(name)


def trusted_modules() -> frozenset:
    return frozenset(_TRUSTED)


def check_safe(path: str | os.PathLike, allow_unsafe: bool = False
               ) -> str:
    """The format of ``path`` (:func:`formats.detect`), after refusing code.

    Call this before any Keras or TensorFlow loader sees the file.

    Raises:
        UnsafeModelError: code found and ``allow_unsafe`` is False.
        formats.UnknownFormatError, ValueError: not a readable model file
            (one line naming it), whatever ``allow_unsafe`` says.
    """
    path = os.fspath(path)
    fmt = formats.detect(path)
    found = scan(path, fmt)
    if found and not allow_unsafe:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise UnsafeModelError(
            f"{path}: the model carries code ({found[0]}{more}), which would "
            "run while it loads; refused. Pass --unsafe (allow_unsafe=True) "
            "only if you trust the file")
    return fmt


def scan(path: str, fmt: str) -> list[str]:
    """Code-carrying objects in the model at ``path`` (of format ``fmt``),
    described for a user: ``["Lambda layer 'double'", ...]``. Reads the
    config only; nothing is deserialized."""
    if fmt == formats.KERAS_ZIP:
        return scan_config(_zip_config(path))
    if fmt == formats.HDF5:
        found: list[str] = []
        for config in _h5_configs(path):
            found += scan_config(config)
        return found
    if fmt == formats.SAVED_MODEL:
        return _saved_model_ops(path)
    raise formats.UnknownFormatError(f"{path}: unknown model format {fmt!r}")


def _bad(path: str, what: str) -> ValueError:
    return ValueError(f"{path}: {what}; re-save the model with "
                      "model.save('model.keras') or pass an .h5 file")


def _zip_config(path: str):
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "config.json" not in names:
                raise _bad(path, "not a Keras archive (no config.json in the "
                           f"zip; it holds {len(names)} entries)")
            info = zf.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise _bad(path, f"config.json declares {info.file_size} "
                           f"bytes (limit {MAX_CONFIG_BYTES})")
            with zf.open(info) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
    except ValueError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
            RuntimeError, NotImplementedError) as exc:
        raise _bad(path, f"not a readable Keras zip archive ("
                   f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                   ) from None
    return _json(path, raw, "config.json")


def _json(path: str, raw, what: str):
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes)
                          else raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"{what} is not valid JSON ({exc})") from None


def h5_attributes(path: str) -> tuple:
    """``(model_config, training_config)`` raw attributes of an HDF5 file
    (run in a child: the HDF5 library can hang or crash on a hostile file)."""
    import h5py
    with h5py.File(path, "r") as f:
        found = [f.attrs.get(k) for k in ("model_config", "training_config")]
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else
                 (None if v is None else str(v)) for v in found)


def _h5_configs(path: str) -> list:
    from converters.runtimes import sandbox
    try:
        raw, training = sandbox.call(
            h5_attributes, os.path.abspath(path), name=path,
            what="reading the HDF5 file", timeout=H5_TIMEOUT,
            preload=("h5py",))
    except sandbox.SandboxError as exc:
        raise _bad(path, f"not a readable HDF5 Keras model: "
                   f"{str(exc).split(': ', 1)[-1]}") from None
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise _bad(path, f"not a readable HDF5 Keras model ({exc})") from None
    if raw is None:
        raise _bad(path, "an HDF5 file without a Keras model config (a "
                   "weights-only file?)")
    configs = [_json(path, raw, "model_config")]
    if training is not None:
        configs.append(_json(path, training, "training_config"))
    return configs


def scan_config(config) -> list[str]:
    """Code-carrying objects in a Keras config (Keras 2 or 3), recursively:
    nested models, wrappers and compile configs included."""
    found: list[str] = []
    _walk(config, found, "the model")
    return found


def _walk(node, found: list, where: str) -> None:
    if isinstance(node, dict):
        here = _object_name(node) or where
        problem = _code_in(node, here)
        if problem:
            found.append(problem)
            return
        for value in node.values():
            _walk(value, found, here)
    elif isinstance(node, list):
        if _is_bytecode(node[0] if node else None):
            found.append(f"serialized Python bytecode in {where}")
            return
        for value in node:
            _walk(value, found, where)
    elif _is_bytecode(node):
        found.append(f"serialized Python bytecode in {where}")


def _object_name(node: dict) -> str | None:
    conf = node.get("config")
    name = conf.get("name") if isinstance(conf, dict) else None
    kind = node.get("class_name")
    if isinstance(name, str) and isinstance(kind, str):
        return f"{kind} {name!r}"
    return None


def _code_in(node: dict, where: str) -> str | None:
    kind = node.get("class_name")
    conf = node.get("config")
    name = conf.get("name") if isinstance(conf, dict) else None
    if kind == "Lambda":
        return f"Lambda layer {name!r}"
    if kind == "__lambda__":
        return f"a serialized Python lambda in {where}"
    if any(node.get(k) == "lambda" for k in ("function_type",
                                             "output_shape_type")):
        return f"a serialized Python function in {where}"
    if kind in ("TFOpLambda", "SlicingOpLambda") and isinstance(conf, dict):
        function = conf.get("function")
        if not _tf_function_ok(function):
            return f"{kind} layer {name!r} calling tf.{function}"
    module = node.get("module")
    if isinstance(module, str) and isinstance(kind, str) and \
            not _trusted(module):
        label = f"function {conf!r}" if kind == "function" else \
            f"custom object {kind!r}"
        return (f"{label} from module {module!r} (import it with --import "
                f"{module.split('.')[0]} if you trust it)")
    return None


def _trusted(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _TRUSTED)


def _tf_function_ok(function) -> bool:
    if not isinstance(function, str) or not function:
        return False
    parts = function.split(".")
    if len(parts) == 1:
        return function not in _TF_DENIED and function.isidentifier()
    return parts[0] in _TF_NAMESPACES and all(p.isidentifier()
                                              for p in parts)


def _is_bytecode(value) -> bool:
    """A base64 string that decodes to a marshalled code object (Keras
    stores lambdas so, with or without a ``__lambda__`` wrapper)."""
    if not isinstance(value, str) or len(value) < 16 or \
            value[0] not in "4Y":
        return False
    try:
        head = base64.b64decode(value.replace("\n", "")[:8], validate=True)
    except (binascii.Error, ValueError):
        return False
    return head[:1] in (b"\xe3", b"c")


def _saved_model_ops(path: str) -> list[str]:
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    pb = os.path.join(path, "saved_model.pb")
    try:
        if os.path.isfile(pb):
            with open(pb, "rb") as f:
                proto.ParseFromString(f.read())
        else:
            with open(os.path.join(path, "saved_model.pbtxt")) as f:
                text_format.Parse(f.read(), proto)
    except (message.DecodeError, text_format.ParseError, OSError,
            UnicodeDecodeError) as exc:
        raise _bad(path, f"unreadable saved_model.pb ({exc})") from None
    found: list[str] = []
    for graph in proto.meta_graphs:
        nodes: Iterable = list(graph.graph_def.node)
        for fn in graph.graph_def.library.function:
            nodes = list(nodes) + [(n, fn.signature.name)
                                   for n in fn.node_def]
        for item in nodes:
            node, fn = item if isinstance(item, tuple) else (item, None)
            if node.op in _PY_OPS:
                where = f" in function {fn!r}" if fn else ""
                found.append(f"{node.op} op {node.name!r}{where} (a Python "
                             "function)")
    return found
