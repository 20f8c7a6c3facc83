"""Load and check user data (``DATA.npz`` with ``x`` and optional ``y``).

Every problem is one line naming the file, the array and its shape.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np

#: share of DATA.npz held out (seeded) to validate the converted model
HOLDOUT = 0.2


class DataError(ValueError):
    """The data file or an array in it is unusable."""


def load_npz(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(x, y)`` from ``path``; ``y`` is ``None`` when absent."""
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist")
    check_declared_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if "x" not in keys:
                raise DataError(f"{path}: no array 'x' (found {keys}); save "
                                "inputs as x and optional integer labels as y")
            x = npz["x"]
            y = npz["y"] if "y" in keys else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file "
                        f"({type(exc).__name__}: {exc})") from None
    check_x(x, f"{path}:x")
    if y is not None:
        check_y(y, len(x), f"{path}:y")
    _check_float32_range(x, f"{path}:x")
    return x.astype(np.float32, copy=False), y


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


def check_for_model(x: np.ndarray, y: Optional[np.ndarray], model,
                    name: str = "data") -> None:
    """Check ``x``/``y`` against a Keras model's input and output."""
    check_x(x, f"{name}:x", model.input_shape)
    if y is not None:
        out = model.output_shape
        # y shaped like the output holds targets (regression,
        # reconstruction), not class ids
        targets = np.ndim(y) >= 2 and isinstance(out, tuple) and \
            tuple(np.shape(y)[1:]) == tuple(out[1:])
        classes = out[-1] if isinstance(out, tuple) and len(out) == 2 and \
            out[-1] and out[-1] > 1 and not targets else None
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
    """Seeded split: ``(x_train, y_train), (x_hold, y_hold)``."""
    order = np.random.default_rng(seed).permutation(len(x))
    k = max(1, int(round(holdout * len(x))))
    hold, train = order[:k], order[k:]
    y_train = None if y is None else y[train]
    y_hold = None if y is None else y[hold]
    return (x[train], y_train), (x[hold], y_hold)
