"""Load and check user data (``DATA.npz``).

One array per model input: ``x`` for a single input, else the input names
(or ``x0``, ``x1``, ... in input order); one target per output: ``y`` for
a single output, else the output names (or ``y0``, ``y1``, ...). Arrays keep
their dtype (integer token ids stay integers; floats become float32).
Every problem is one line naming the file, the array and its shape, and
the names expected.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: share of DATA.npz held out (seeded) to validate the converted model
HOLDOUT = 0.2


class DataError(ValueError):
    """The data file or an array in it is unusable."""


def read_npz(path: str) -> Dict[str, np.ndarray]:
    """Every array in ``path``, by name, in its own dtype."""
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist")
    check_declared_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.keys()}
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file "
                        f"({type(exc).__name__}: {exc})") from None


def load_npz(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(x, y)`` from ``path`` (a single-input model's data); ``y`` is
    ``None`` when absent. ``x`` keeps an integer dtype, floats are float32."""
    arrays = read_npz(path)
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x' (found {sorted(arrays)}); "
                        "save inputs as x and optional integer labels as y")
    x, y = arrays["x"], arrays.get("y")
    check_x(x, f"{path}:x")
    if y is not None:
        check_y(y, len(x), f"{path}:y")
    _check_float32_range(x, f"{path}:x")
    return _dtype(x), y


def _dtype(x: np.ndarray) -> np.ndarray:
    return x if np.issubdtype(x.dtype, np.integer) else \
        x.astype(np.float32, copy=False)


#: environment variable: the most bytes DATA.npz may declare
MAX_DATA_ENV = "TFCOMPRESS_MAX_DATA_BYTES"


def max_data_bytes() -> int:
    """``$TFCOMPRESS_MAX_DATA_BYTES``, else half the memory available now."""
    if os.environ.get(MAX_DATA_ENV):
        return int(float(os.environ[MAX_DATA_ENV]))
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") // 2
    except (ValueError, OSError):
        return 4 << 30


def check_declared_sizes(path: str) -> int:
    """Read the sizes an .npz declares (zip headers and each .npy header)
    before loading anything: refuse members whose header and zip entry
    disagree, and a total above :func:`max_data_bytes` (a 1 MB file may
    declare gigabytes of zeros). Returns the declared bytes."""
    import zipfile
    limit, total = max_data_bytes(), 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0
                            if version == (1, 0) else
                            np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                    header = f.tell()
                if dtype.hasobject:
                    raise DataError(
                        f"{path}: not a readable .npz file (array "
                        f"{info.filename[:-4]!r} holds Python objects, which "
                        "are never unpickled; save numeric arrays)")
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if nbytes + header != info.file_size:
                    raise DataError(
                        f"{path}: array {info.filename[:-4]!r} declares shape "
                        f"{shape} ({dtype}, {nbytes:,} bytes) but its zip "
                        f"entry holds {info.file_size - header:,} bytes; the "
                        "file is corrupt")
                total += nbytes
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file "
                        f"({type(exc).__name__}: {exc})") from None
    if total > limit:
        raise DataError(f"{path}: declares {total:,} bytes of arrays, more "
                        f"than the {limit:,} this process may load "
                        f"({MAX_DATA_ENV} raises it); pass a smaller sample")
    return total


def _check_float32_range(x: np.ndarray, name: str) -> None:
    """Models compute in float32: refuse finite values it cannot hold."""
    if x.dtype.kind == "f" and x.dtype.itemsize > 4 and x.size:
        top = float(np.max(np.abs(x)))
        if top > float(np.finfo(np.float32).max):
            raise DataError(f"{name} (shape {x.shape}, {x.dtype}) holds "
                            f"values up to {top:.3g}, beyond float32's range "
                            f"({np.finfo(np.float32).max:.3g}); rescale the "
                            "data")


def _pick(arrays: dict, names: List[str], single: str, path: str,
          what: str, required: bool):
    """The arrays for ``names`` (by name, ``x0``.., or ``single``)."""
    if len(names) == 1 and single in arrays:
        return [arrays[single]]
    if all(n in arrays for n in names):
        return [arrays[n] for n in names]
    numbered = [f"{single}{i}" for i in range(len(names))]
    if all(n in arrays for n in numbered):
        return [arrays[n] for n in numbered]
    if not required:
        return None
    missing = [n for n in names if n not in arrays]
    expect = (f"'{single}'" if len(names) == 1 else
              f"one array per {what} named {names} (or {numbered})")
    raise DataError(f"{path}: no array for {what} {missing[0]!r} (found "
                    f"{sorted(arrays)}); save {expect}")


def for_model(arrays: Dict[str, np.ndarray], model, path: str = "data"):
    """``(x, y)`` arranged for ``model``: one array (or a dict keyed by input
    name) per input, and ``y`` likewise per output (``None`` without
    targets); each array is checked against its input's shape."""
    from converters.conversion.signature import input_names, output_names
    ins, outs = input_names(model), output_names(model)
    xs = _pick(arrays, ins, "x", path, "input", True)
    shapes = [tuple(t.shape) for t in model.inputs]
    for name, x, shape in zip(ins, xs, shapes):
        key = "x" if len(ins) == 1 and "x" in arrays else name
        check_x(x, f"{path}:{key} (input {name!r})", shape)
        _check_float32_range(x, f"{path}:{key}")
    n = len(xs[0])
    for name, x in zip(ins, xs):
        if len(x) != n:
            raise DataError(f"{path}: input {name!r} has {len(x)} rows, "
                            f"input {ins[0]!r} has {n}; they must match")
    ys = _pick(arrays, outs, "y", path, "output", False)
    if ys is not None:
        for name, y in zip(outs, ys):
            check_y(y, n, f"{path}:y (output {name!r})")
    xs = [_dtype(x) for x in xs]
    x = xs[0] if len(xs) == 1 else dict(zip(ins, xs))
    y = None if ys is None else (ys[0] if len(ys) == 1 else
                                 dict(zip(outs, ys)))
    return x, y


def check_x(x: np.ndarray, name: str = "x",
            input_shape: Optional[Sequence] = None) -> None:
    x = np.asarray(x)
    if x.ndim == 0:
        raise DataError(f"{name} is a scalar (shape {x.shape}); need an "
                        "array of samples [N, ...]")
    if x.size == 0 or len(x) == 0:
        raise DataError(f"{name} is empty (shape {x.shape}); need samples")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(
            x.dtype, np.complexfloating):
        raise DataError(f"{name} has dtype {x.dtype} (shape {x.shape}); "
                        "expected a real numeric array")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise DataError(f"{name} (shape {x.shape}) holds {bad} NaN/Inf "
                        "values; clean or impute them")
    if input_shape is not None and input_shape and isinstance(
            input_shape[0], (list, tuple)):
        input_shape = input_shape[0]  # several inputs: check the first
    if input_shape is not None:
        expected = tuple(d for d in input_shape[1:])
        got = tuple(x.shape[1:])
        if len(expected) != len(got) or any(
                e is not None and e != g for e, g in zip(expected, got)):
            raise DataError(
                f"{name} has shape {x.shape}; the model expects "
                f"(N, {', '.join('?' if d is None else str(d) for d in expected)})")


def check_y(y: np.ndarray, n: int, name: str = "y",
            num_classes: Optional[int] = None) -> None:
    y = np.asarray(y)
    if y.ndim == 0:
        raise DataError(f"{name} is a scalar (shape {y.shape}); need one "
                        "label per sample")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(
            y.dtype, np.complexfloating):
        raise DataError(f"{name} has dtype {y.dtype} (shape {y.shape}); "
                        "expected integer class labels or numeric targets")
    if len(y) != n:
        raise DataError(f"{name} has {len(y)} rows (shape {y.shape}) but x "
                        f"has {n}; they must match")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
        raise DataError(f"{name} (shape {y.shape}) holds NaN/Inf values")
    if num_classes is not None and y.ndim == 2 and y.shape[1] > 1:
        raise DataError(f"{name} has shape {y.shape}: one-hot or per-class "
                        "values, but the model's classes need one integer "
                        "label per sample; save y.argmax(axis=1)")
    if num_classes is not None and y.size:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(
                y == np.round(y)):
            raise DataError(f"{name} (shape {y.shape}) holds non-integer "
                            f"labels; the model has {num_classes} classes: "
                            "pass class ids 0..N-1")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(f"{name} (shape {y.shape}) has labels in "
                            f"[{lo}, {hi}] but the model has {num_classes} "
                            "classes")


def check_trainable_io(model, command: str) -> None:
    """``optimize`` and ``sensitivity`` train and sweep one input and one
    output; several stop here with one line naming them and the way on."""
    if isinstance(model, str):
        return
    from converters.conversion.signature import input_names, output_names
    ins, outs = input_names(model), output_names(model)
    if len(ins) > 1 or len(outs) > 1:
        raise DataError(
            f"{command} trains models with one input and one output; this "
            f"one has inputs {ins} and outputs {outs}: convert it with "
            "`tfcompress convert` (int8 PTQ, every output judged), or "
            "compress it in Python with tfc.prune/tfc.quantize and your own "
            "multi-output fit")


def check_classifier(model, y, command: str) -> None:
    """``sensitivity`` ranks layers by classification accuracy: one output
    of ``(N, classes)`` and integer labels ``y``; else one line saying so."""
    out = tuple(model.outputs[0].shape)
    if y is None:   # --activations compares with the float model's outputs
        return
    if len(out) != 2 or not np.issubdtype(np.asarray(y).dtype, np.integer):
        what = f"output shape {out} with {np.asarray(y).dtype} targets"
        raise DataError(
            f"{command} measures each layer's effect on classification "
            f"accuracy (one (N, classes) output, integer labels y); this "
            f"model has {what}: convert it with `tfcompress convert` (its "
            "outputs are judged by task) or optimize it with a recipe")


def check_for_model(x: np.ndarray, y: Optional[np.ndarray], model,
                    name: str = "data") -> None:
    """Check ``x``/``y`` against a Keras model's input and output (one
    input and output; several are checked by :func:`for_model`). Integer
    ``y`` of a model with one vector output are class ids; float ``y``
    are regression targets."""
    if isinstance(x, dict) or isinstance(y, dict) or len(model.inputs) > 1:
        return
    check_x(x, f"{name}:x", tuple(model.inputs[0].shape))
    if y is not None and len(model.outputs) == 1:
        out = tuple(model.outputs[0].shape)
        # y shaped like the output holds targets (regression,
        # reconstruction), not class ids
        targets = np.ndim(y) >= 2 and tuple(np.shape(y)[1:]) == out[1:]
        classes = out[-1] if len(out) == 2 and out[-1] and out[-1] > 1 and \
            not targets and np.issubdtype(np.asarray(y).dtype, np.integer) \
            else None
        check_y(y, len(x), f"{name}:y", classes)


def check_weights(model) -> None:
    """Refuse a Keras model whose weights hold NaN or Inf (a diverged
    training run): one line naming the layer and the weight.

    Example:
        >>> check_weights(model)
        DataError: layer 'fc' weight 'fc/kernel:0' (shape (64, 32)) holds 3 NaN/Inf values; ...
    """
    for layer in _leaf_layers(model):
        for weight in layer.weights:
            values = np.asarray(weight.numpy() if hasattr(weight, "numpy")
                                else weight)
            if not np.issubdtype(values.dtype, np.floating):
                continue
            bad = int(np.sum(~np.isfinite(values)))
            if bad:
                raise DataError(
                    f"layer {layer.name!r} weight {weight.name!r} (shape "
                    f"{tuple(values.shape)}) holds {bad} NaN/Inf values; "
                    "retrain (lower the learning rate) or restore a good "
                    "checkpoint before converting")


def _leaf_layers(model):
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):  # nested model
            yield from _leaf_layers(layer)
        else:
            yield layer


def split(x: np.ndarray, y: Optional[np.ndarray], holdout: float = HOLDOUT,
          seed: int = 0):
    """Seeded split: ``(x_train, y_train), (x_hold, y_hold)``; ``x`` and
    ``y`` may be dicts of arrays (several inputs or outputs)."""
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(holdout * n)))
    hold, train = order[:k], order[k:]

    def take(a, rows):
        if a is None:
            return None
        if isinstance(a, dict):
            return {key: value[rows] for key, value in a.items()}
        return a[rows]
    return (take(x, train), take(y, train)), (take(x, hold), take(y, hold))
