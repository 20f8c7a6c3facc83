"""Run a .tflite in the real TensorFlow Lite Micro (TFLM) interpreter.

:func:`validate` runs the model in TFLM (the ``tflite_micro`` wheel),
compares with LiteRT outputs in LSB, and finds the smallest tensor arena by
bisection (:func:`find_arena`); :func:`run` returns outputs.

Every interpreter run happens in a child process
(:mod:`converters.runtimes.tflm_worker`): TFLM given an undersized arena can
crash the process with SIGSEGV.

Arena numbers are measured on the host (64-bit pointers, reference kernels).
On a 32-bit MCU the interpreter's own structs are smaller, so the host
minimum is usually an over-estimate there; optimized kernels (CMSIS-NN,
ESP-NN) may ask for larger scratch buffers than the reference kernels do,
which the margin only partly covers.

Example:
    >>> from converters.runtimes import tflm
    >>> report = tflm.validate(tflite_bytes, x_int8, reference=litert_out)
    >>> report["arena_bytes"], report["arena_recommended"], report["passed"]
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from converters import progress
from converters.runtimes.tflm_arena import (ARENA_GRANULARITY, ARENA_MARGIN,
                                            _call_worker, _describe_exit,
                                            _find_arena,
                                            arena_margin, find_arena,
                                            runs_with_arena)
from converters.targets.micro import (_FLOATS, _NP_DTYPES, MicroError,
                                      _check_dynamic_shapes, check_compatible)
from converters.tflite import flatbuffer
from converters.tflite.flatbuffer import ModelInfo

__all__ = [
    "ARENA_GRANULARITY",
    "ARENA_MARGIN",
    "MicroError",
    "arena_margin",
    "find_arena",
    "run",
    "runs_with_arena",
    "validate",
]


def _as_list(values, n: int, what: str) -> list[np.ndarray]:
    if isinstance(values, dict):
        values = list(values.values())
    if n == 1 and not isinstance(values, (list, tuple)):
        values = [values]
    values = [np.asarray(v) for v in values]
    if len(values) != n:
        raise MicroError(f"the model has {n} {what}(s) but {len(values)} "
                         f"array(s) were given")
    return values


def _run_in_child(path: str, arena: int, xs: list[np.ndarray], n_out: int,
                  timeout: float) -> list[np.ndarray]:
    tmp = os.path.dirname(path)
    in_path, out_path = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
    np.savez(in_path, **{f"in_{k}": x for k, x in enumerate(xs)})
    with progress.relay():
        code, err = _call_worker(
            ["run", path, arena, len(xs), n_out, in_path, out_path], timeout)
    if code != 0:
        raise MicroError(f"TFLM run with a {arena}-byte arena failed: "
                         f"{_describe_exit(code, err)}")
    with np.load(out_path) as out:
        return [out[f"out_{k}"] for k in range(n_out)]


def _check_inputs(info: ModelInfo, xs: list[np.ndarray]) -> int:
    n = None
    for k, (t, x) in enumerate(zip(info.input_details, xs)):
        want = _NP_DTYPES.get(t.dtype)
        if want is not None and x.dtype != want:
            hint = (f": quantize with scale {t.scale[0]:.6g} and zero point "
                    f"{t.zero_point[0]}" if t.scale and t.zero_point else "")
            raise MicroError(
                f"input {k} {t.name!r} is {t.dtype} but the data is "
                f"{x.dtype}{hint}")
        size = int(np.prod(t.shape[1:])) if t.shape else 1
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != size:
            raise MicroError(
                f"input {k} {t.name!r} wants samples of shape {t.shape[1:]} "
                f"but the data has shape {list(x.shape)} (expected [N, "
                f"{', '.join(map(str, t.shape[1:]))}])")
        if n is not None and x.shape[0] != n:
            raise MicroError(f"inputs disagree on the number of samples: "
                             f"{n} vs {x.shape[0]} (input {k})")
        n = x.shape[0]
    if not n:
        raise MicroError("no samples given: pass inputs of shape [N, ...] "
                         "with N >= 1")
    return n


def run(tflite: bytes, inputs, *, arena_size: int | None = None,
        timeout: float = 120.0) -> list[np.ndarray]:
    """Run ``inputs`` (``[N, ...]`` each, one invoke per sample) in TFLM.

    Args:
        tflite: the model.
        inputs: one array, or a list with one array per model input, already
            in the input tensors' dtypes.
        arena_size: bytes; default: the minimum from :func:`find_arena` plus
            :func:`arena_margin`.
        timeout: seconds for the child process.

    Returns:
        One array per model output, shaped ``[N, *output_shape[1:]]``.
    """
    info = flatbuffer.read(tflite)
    xs = _as_list(inputs, len(info.inputs), "input")
    _check_inputs(info, xs)
    with tempfile.TemporaryDirectory(prefix="tfc-micro-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        if arena_size is None:
            arena_min = _find_arena(path, len(xs), timeout)
            arena_size = arena_min + arena_margin(arena_min)
        return _run_in_child(path, int(arena_size), xs, len(info.outputs),
                             timeout)


# ------------------------------------------------------------- validate ---

def _output_lsb(info: ModelInfo, k: int) -> float | None:
    """Size of one LSB of output ``k`` in its own units (None: unknown)."""
    t = info.output_details[k]
    if t.dtype not in _FLOATS:
        return 1.0
    for op in info.operators:
        if info.outputs[k] in op.outputs and op.name == "DEQUANTIZE":
            src = info.tensors[op.inputs[0]]
            return src.scale[0] if src.scale else None
    return None


def _compare(info: ModelInfo, got: list[np.ndarray], ref: list[np.ndarray],
             tolerance_lsb: int) -> dict:
    n = got[0].shape[0]
    sample_max = np.zeros(n)
    agreements = []
    for k, (a, b) in enumerate(zip(got, ref)):
        b = np.asarray(b)
        if b.shape[0] != n or b.size != a.size:
            raise MicroError(
                f"reference output {k} has shape {list(b.shape)} but TFLM "
                f"output {k} has shape {list(a.shape)}")
        a2, b2 = a.reshape(n, -1), b.reshape(n, -1)
        if np.issubdtype(a2.dtype, np.integer):
            diff = np.abs(a2.astype(np.int64) - b2.astype(np.int64))
        else:
            lsb = _output_lsb(info, k) or 1.0
            diff = np.abs(a2.astype(np.float64) - b2.astype(np.float64)) / lsb
        sample_max = np.maximum(sample_max, diff.max(axis=1))
        if a2.shape[1] > 1:
            agreements.append(float(np.mean(
                a2.argmax(axis=1) == b2.argmax(axis=1))))
    within = float(np.mean(sample_max <= tolerance_lsb))
    max_abs = float(sample_max.max())
    classification = bool(agreements)
    agreement = float(np.mean(agreements)) if classification else within
    return {
        "agreement": agreement,
        "max_abs_lsb": int(max_abs) if max_abs.is_integer() else max_abs,
        "within_tolerance": within,
        "classification": classification,
        "passed": bool(within >= 0.99 and
                       (not classification or agreement >= 0.98)),
    }


def validate(tflite: bytes, inputs, reference=None, *, tolerance_lsb: int = 1,
             info: ModelInfo | None = None, require_int8: bool = True,
             timeout: float = 120.0) -> dict:
    """Run the model in TFLM, compare with LiteRT, and measure the arena.

    The pass rule:

    * per sample, the largest absolute difference over all output elements,
      in LSB of the output tensor (float outputs: in units of the scale of
      the int8 tensor the final DEQUANTIZE reads), must be
      ``<= tolerance_lsb`` for at least 99% of the samples, and
    * for classification outputs (more than one value per sample) the top-1
      class must agree for at least 98% of the samples.

    ``agreement`` is the top-1 agreement for classification outputs (mean over
    such outputs); for outputs with one value per sample it is the fraction
    of samples within tolerance. Without ``reference`` only the TFLM run and
    the arena are checked (``agreement`` and ``max_abs_lsb`` are ``None``).

    Compute ``reference`` with LiteRT's builtin kernels
    (``Interpreter(..., experimental_op_resolver_type=OpResolverType.
    BUILTIN_WITHOUT_DEFAULT_DELEGATES)``): they requantize like TFLM. The
    default XNNPACK delegate (and ``BUILTIN_REF``) round differently; a
    one-LSB difference in a hidden layer can grow to tens of LSB at a
    narrow-range output, so a few samples may then exceed the tolerance.

    The arena is bisected (see :func:`find_arena`); ``arena_recommended`` is
    the minimum plus :func:`arena_margin` (5%, rounded down to 16 bytes), and
    the comparison run itself uses ``arena_recommended``.

    Args:
        tflite: the model bytes.
        inputs: one array or a list (one per model input) of ``[N, ...]``
            values in the input tensors' dtype (int8 for an int8 model).
        reference: LiteRT outputs for the same inputs, same layout.
        tolerance_lsb: allowed difference in LSB.
        info: the parsed model, when the caller has it.
        require_int8: see :func:`check_compatible`.
        timeout: seconds for each child process.

    Returns:
        dict with ``agreement``, ``max_abs_lsb``, ``within_tolerance``,
        ``classification``, ``samples``, ``arena_bytes`` (bisected minimum),
        ``arena_recommended``, ``arena_margin``, ``passed``, ``seconds``.

    Raises:
        MicroError: the model is not TFLM-compatible, the data does not fit
            the model, or the TFLM run fails.

    Example:
        >>> r = validate(tflite, x_int8, reference=y_litert)
        >>> r["passed"], r["arena_recommended"]
        (True, 2128)
    """
    t0 = time.perf_counter()
    tflite = bytes(tflite)
    info = info or flatbuffer.read(tflite)
    check_compatible(info, require_int8=require_int8)
    _check_dynamic_shapes(tflite)
    xs = _as_list(inputs, len(info.inputs), "input")
    n = _check_inputs(info, xs)
    refs = None if reference is None else _as_list(
        reference, len(info.outputs), "output")
    with tempfile.TemporaryDirectory(prefix="tfc-micro-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        arena_min = _find_arena(path, len(xs), timeout)
        margin = arena_margin(arena_min)
        got = _run_in_child(path, arena_min + margin, xs, len(info.outputs),
                            timeout)
    if refs is None:
        result = {"agreement": None, "max_abs_lsb": None,
                  "within_tolerance": None, "classification": None,
                  "passed": True}
    else:
        result = _compare(info, got, refs, tolerance_lsb)
    result.update({
        "samples": int(n), "tolerance_lsb": int(tolerance_lsb),
        "arena_bytes": int(arena_min),
        "arena_recommended": int(arena_min + margin),
        "arena_margin": int(margin),
        "seconds": round(time.perf_counter() - t0, 3),
    })
    return result
