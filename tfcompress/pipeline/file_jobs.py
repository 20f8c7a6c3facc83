"""Jobs on a .tflite file the user gives: read (verified), inspect, bench,
validate (each output judged by its task), in child processes for the
interpreters."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from tfcompress.pipeline import data as datasets


def load_tflite(path: str, *, mapped: bool = False):
    """The bytes of a user's .tflite file, verified by LiteRT's C++
    flatbuffers verifier (in a child, before Python reads the file) and
    structurally (:func:`converters.tflite.verify.verify`), so that no
    interpreter ever sees a malformed flatbuffer. Raises
    ``InvalidModelError`` naming the file."""
    import os
    from converters.tflite.native_verify import verify_file
    from converters.tflite.verify import verify
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    verify_file(path)
    with open(path, "rb") as f:
        if mapped and os.fstat(f.fileno()).st_size:
            import mmap  # read in place: no copy of a large file
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            data = f.read()
    verify(data, name=path)
    return data


def read_tflite(path: str, *, mapped: bool = False):
    """``(bytes, ModelInfo)`` of a verified .tflite file (``mapped``: a
    read-only memory map instead of bytes); any parse failure is one
    ``InvalidModelError`` line naming the file."""
    from converters.tflite.flatbuffer import InvalidModelError, read
    data = load_tflite(path, mapped=mapped)
    try:
        return data, read(data)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{path}: {exc}") from None


def inspect_file(path: str) -> dict:
    """:func:`converters.inspect.inspect` of a verified .tflite file (pure
    Python parsing: no interpreter runs)."""
    from converters.tflite import inspect as inspector
    from converters.tflite.flatbuffer import InvalidModelError
    data, _ = read_tflite(path, mapped=True)
    try:
        return inspector.inspect(data)
    except Exception as exc:  # noqa: BLE001 - a verified but odd file
        raise InvalidModelError(
            f"{path}: cannot describe the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def bench_file(path: str, **kwargs) -> dict:
    """:func:`converters.latency.measure` of a .tflite file, with the
    interpreter in a child process (:mod:`converters.sandbox`)."""
    from converters.runtimes import latency
    from converters.runtimes import sandbox
    data, _ = read_tflite(path)
    try:
        return sandbox.call(latency.measure, data, name=path,
                            what="the LiteRT interpreter",
                            preload=("ai_edge_litert.interpreter",), **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise _named(exc, path) from None


def _named(exc: Exception, path: str) -> Exception:
    """``exc`` with its first line, prefixed by ``path`` unless it names
    it already (an interpreter's words name no file)."""
    text = str(exc).strip().splitlines()
    if text and path in text[0]:
        return exc
    line = text[0] if text else type(exc).__name__
    if line.startswith("model: "):  # the interpreter's stand-in name
        line = line[len("model: "):]
    try:
        return type(exc)(f"{path}: {line}")
    except Exception:  # noqa: BLE001 - an exception without (msg)
        return RuntimeError(f"{path}: {line}")


def validate_file(path: str, x: np.ndarray, y=None, *, target="android",
                  timeout: float = 900.0, data_name: str = "data",
                  reference: Optional[str] = None, judging=None):
    """Validate a .tflite file on data; each output judged by its task.

    ``reference`` (a Keras model file, SavedModel folder or float .tflite)
    is the float model the outputs are compared with; without it, labels
    decide alone (see :mod:`converters.verdicts`) and for micro TFLM is
    compared with LiteRT. ``judging``: ``tasks``, ``tolerances``,
    ``min_accuracy`` (:meth:`converters.Artifact.validate`).

    The file is verified first; the interpreters run in a child process
    (:mod:`converters.runtimes.sandbox`), so a model that crashes them ends
    in one ``SandboxError`` line instead of killing the caller.
    """
    from converters import Artifact
    from converters.runtimes import sandbox
    from converters.tflite.flatbuffer import InvalidModelError
    tflite, info = read_tflite(path)
    _check_data(info, x, y, data_name)
    if target == "micro":  # pure Python: refuse before any child starts
        from converters.targets.micro import check_compatible
        try:
            check_compatible(tflite, require_int8=False)
        except ValueError as exc:
            raise _named(exc, path) from None
    mode = _mode_of(tflite)
    try:
        art = Artifact(tflite, target=target, mode=mode, name=path)
    except (ValueError, RuntimeError):
        raise
    except Exception as exc:  # noqa: BLE001 - a verified but odd file
        raise InvalidModelError(f"{path}: cannot read the model "
                                f"({type(exc).__name__}: {exc})") from None
    judging = dict(judging or {})
    if reference is not None:
        judging.update(_reference(reference, x))
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tfc-validate-") as tmp:
        # the child memory-maps the data: no pickled copies of large arrays
        model_path = os.path.join(tmp, "model.tflite")
        with open(model_path, "wb") as f:
            f.write(tflite)   # the verified bytes, not the file again
        files = {"model": model_path, "x": _to_npy(tmp, "x", x),
                 "y": _to_npy(tmp, "y", y)}
        try:
            art.report, art.extra_files = sandbox.call(
                _validate_in_child, files, target, mode, path, judging,
                name=path, what="validation (LiteRT/TFLM)", timeout=timeout,
                preload=_VALIDATE_IMPORTS)
        except (ValueError, RuntimeError) as exc:
            raise _named(exc, path) from None
    if reference is not None:
        art.report["reference"] = reference
    return art


def _reference(path: str, x) -> dict:
    """``validate --reference``: a float .tflite (verified; it runs in the
    sandbox beside the model) or a Keras / SavedModel file, run here."""
    import os
    if path.endswith(".tflite"):
        return {"reference": load_tflite(path)}
    if not os.path.exists(path):
        raise FileNotFoundError(f"reference model {path!r} does not exist")
    from converters import load_model
    from converters.runtimes import reference as references
    from converters.verdicts import hints
    model = load_model(path)
    specs = None
    if getattr(model, "outputs", None) is not None:
        specs = hints.specs_from_keras(model)
    xs = x if isinstance(x, (list, tuple)) else [x]
    return {"reference": references.outputs(model, xs), "specs": specs}


#: what the validation child needs: imported once in the sandbox server
_VALIDATE_IMPORTS = ("converters.conversion.artifact", "converters.targets.micro",
                     "ai_edge_litert.interpreter",
                     "tensorflow.lite.python.schema_py_generated",
                     "tensorflow.lite.tools.flatbuffer_utils")


def _to_npy(folder: str, key: str, value):
    """Save data (an array, a list or a dict of arrays by input/output name)
    as ``.npy`` files in their own dtypes; what :func:`_from_npy` reads."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {"dict": {k: _to_npy(folder, f"{key}_{i}", v)
                         for i, (k, v) in enumerate(value.items())}}
    if isinstance(value, (list, tuple)):
        return {"list": [_to_npy(folder, f"{key}_{i}", v)
                         for i, v in enumerate(value)]}
    path = os.path.join(folder, f"{key}.npy")
    np.save(path, np.asarray(value))
    return path


def _from_npy(desc):
    """Memory-mapped arrays back, in the shape :func:`_to_npy` saved."""
    if desc is None:
        return None
    if isinstance(desc, dict) and "dict" in desc:
        return {k: _from_npy(v) for k, v in desc["dict"].items()}
    if isinstance(desc, dict) and "list" in desc:
        return [_from_npy(v) for v in desc["list"]]
    return np.load(desc, mmap_mode="r")


def _validate_in_child(files: dict, target: str, mode: str, name: str,
                       judging: dict):
    """Runs in the sandbox child: the interpreters see the bytes here; the
    data arrays are memory-mapped ``.npy`` files."""
    from converters import Artifact
    with open(files["model"], "rb") as f:
        tflite = f.read()
    x, y = _from_npy(files["x"]), _from_npy(files["y"])
    art = Artifact(tflite, target=target, mode=mode, name=name)
    art.int8_io = False  # a user's file: uint8 / int16 / float I/O is fine
    judging = dict(judging)
    specs = judging.pop("specs", None)
    art.validate(x, y, require=False, specs=specs, **judging)
    return art.report, art.extra_files


def _check_data(info, x, y, name: str) -> None:
    """``x`` fits the model's first input, ``y`` its output classes."""
    from converters.runtimes.feeds import Feeds
    if not info.inputs or not info.outputs or isinstance(x, (list, tuple,
                                                            dict)):
        return
    x = np.asarray(x)
    stateful = Feeds.of(info).stateful  # [S, T, ...]: checked when fed
    shape = info.input_details[0].shape
    if shape and shape[0] > 1 and not stateful:  # one sample per invoke
        raise datasets.DataError(
            f"{info.input_details[0].name!r}, the model's input, declares "
            f"shape {list(shape)}: {shape[0]:,} samples per invoke, more "
            f"than {name}:x holds ({len(x)}) and than validation feeds (one "
            "per invoke); convert the model with batch size 1")
    datasets.check_x(x, f"{name}:x", None if stateful or not shape
                     else [None, *shape[1:]])
    if y is not None and not isinstance(y, (list, tuple, dict)):
        y = np.asarray(y)
        out = info.output_details[0].shape
        targets = y.ndim >= 2 and tuple(y.shape[1:]) == tuple(out[1:])
        classes = out[-1] if len(out) == 2 and out[-1] > 1 and \
            not targets else None
        datasets.check_y(y, len(x), f"{name}:y", classes)


def _mode_of(tflite: bytes) -> str:
    from converters import read
    info = read(tflite)
    dtypes = {t.dtype for t in info.input_details}
    if dtypes == {"INT8"}:
        return "int8"
    if dtypes == {"INT16"}:
        return "int16x8"
    consts = {t.dtype for t in info.tensors if t.buffer_bytes}
    if "INT4" in consts:
        return "int4"
    if "FLOAT16" in consts:
        return "float16"
    return "dynamic" if "INT8" in consts else "float32"
