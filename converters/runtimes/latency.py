"""Latency of a .tflite in the LiteRT interpreter (XNNPACK on CPU).

Timings are taken around ``invoke()`` only, on random inputs valid for each
input's dtype, after ``warmup`` untimed runs. :func:`compare` interleaves the
models run by run, so a noisy machine (shared CI runners) slows all of them
alike and the ratios stay meaningful; absolute numbers are for this host
only, never for a phone.

Example:
    >>> measure(tflite, threads=(1, 4))["threads"][1]["median_ms"]
    0.041
    >>> print(compare({"float32": f32, "int8": i8, "float16": f16})["text"])
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_THREADS = (1, 4)


def random_inputs(interpreter, seed: int = 0) -> list[np.ndarray]:
    """One random array per model input, valid for its dtype: floats in
    [-1, 1), 8/16-bit integers (quantized data) over their full range,
    int32/int64 (often indices) in {0, 1}, booleans."""
    rng = np.random.default_rng(seed)
    arrays = []
    for detail in interpreter.get_input_details():
        shape = [max(int(d), 1) for d in detail["shape"]]
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            array = rng.uniform(-1, 1, shape).astype(dtype)
        elif dtype.kind in "iu" and dtype.itemsize <= 2:
            info = np.iinfo(dtype)  # quantized data: the full range
            array = rng.integers(info.min, info.max, shape,
                                 endpoint=True).astype(dtype)
        elif dtype.kind in "iu":  # int32/int64: likely indices; keep small
            array = rng.integers(0, 2, shape).astype(dtype)
        elif dtype.kind == "b":
            array = rng.integers(0, 2, shape).astype(bool)
        else:
            raise ValueError(
                f"input {detail['name']!r} has dtype {dtype}; latency needs "
                "numeric or bool inputs")
        arrays.append(array)
    return arrays


def _interpreter(tflite: bytes, threads: int, name: str):
    from ai_edge_litert.interpreter import Interpreter

    from converters.runtimes.litert import check_io_sizes
    try:
        interp = Interpreter(model_content=bytes(tflite), num_threads=threads)
        check_io_sizes(interp)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        text = str(exc).strip()
        flex = sorted(set(re.findall(r"\b(Flex\w+)", text)))
        if flex or "Select TensorFlow" in text:
            raise RuntimeError(
                f"{name}: the model uses Flex op(s) {', '.join(flex) or '?'},"
                " which LiteRT's Python interpreter cannot run; measure on the"
                " device with the Flex delegate (tensorflow-lite-select-tf-"
                "ops)") from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise RuntimeError(f"{name}: LiteRT cannot load the model: {first}"
                           ) from None
    for detail, array in zip(interp.get_input_details(),
                             random_inputs(interp)):
        if list(detail["shape"]) != list(array.shape):
            interp.resize_tensor_input(detail["index"], array.shape)
            interp.allocate_tensors()
        interp.set_tensor(detail["index"], array)
    return interp


def _check(threads: Iterable[int], runs: int, warmup: int) -> tuple:
    threads = tuple(int(t) for t in threads)
    if not threads or min(threads) < 1:
        raise ValueError(f"threads must be positive thread counts, got "
                         f"{threads}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}"
                         f", warmup={warmup}")
    return threads


def _stats(samples_ms: Sequence[float]) -> dict:
    s = np.asarray(samples_ms, np.float64)
    return {"median_ms": round(float(np.median(s)), 4),
            "p90_ms": round(float(np.percentile(s, 90)), 4),
            "min_ms": round(float(s.min()), 4),
            "mean_ms": round(float(s.mean()), 4)}


def _time(models: dict[str, bytes], threads: int, runs: int, warmup: int
          ) -> dict[str, dict]:
    interps = {name: _interpreter(b, threads, name)
               for name, b in models.items()}
    for interp in interps.values():
        for _ in range(warmup):
            interp.invoke()
    samples: dict[str, list[float]] = {name: [] for name in models}
    clock = time.perf_counter
    for _ in range(runs):
        for name, interp in interps.items():
            start = clock()
            interp.invoke()
            samples[name].append((clock() - start) * 1000.0)
    return {name: _stats(s) for name, s in samples.items()}


def compare(models: dict[str, bytes], *,
            threads: Iterable[int] = DEFAULT_THREADS, runs: int = 50,
            warmup: int = 5) -> dict:
    """Measure several .tflite variants of one model side by side.

    Args:
        models: name -> .tflite bytes, e.g. ``{"float32": ..., "int8": ...,
            "float16": ...}``; the first is the baseline for ratios.
        threads: interpreter thread counts to measure.
        runs: timed invocations per model and thread count (interleaved).
        warmup: untimed invocations first.

    Returns:
        ``{"baseline": name, "cpu_count": n, "runs": runs, "models": {name:
        {"bytes": n, "threads": {t: {"median_ms", "p90_ms", "min_ms",
        "mean_ms", "speedup"}}}}, "text": aligned table}``; ``speedup`` is the
        baseline's median over this model's median.
    """
    if not models:
        raise ValueError("compare needs at least one model: pass "
                         "{name: tflite_bytes}")
    threads = _check(threads, runs, warmup)
    names = list(models)
    result = {"baseline": names[0], "cpu_count": os.cpu_count(),
              "runs": runs, "warmup": warmup,
              "models": {n: {"bytes": len(models[n]), "threads": {}}
                         for n in names}}
    for t in threads:
        timed = _time(models, t, runs, warmup)
        base = timed[names[0]]["median_ms"]
        for name in names:
            row = timed[name]
            row["speedup"] = round(base / row["median_ms"], 3) \
                if row["median_ms"] > 0 else None
            result["models"][name]["threads"][t] = row
    result["text"] = format_table(result)
    return result


def measure(tflite: bytes, *, threads: Iterable[int] = DEFAULT_THREADS,
            runs: int = 50, warmup: int = 5) -> dict:
    """Latency of one .tflite per interpreter thread count.

    Returns:
        ``{"bytes": n, "cpu_count": n, "runs": runs, "warmup": warmup,
        "threads": {t: {"median_ms", "p90_ms", "min_ms", "mean_ms"}}}``.

    Example:
        >>> measure(tflite, threads=(1,), runs=20)["threads"][1]["median_ms"]
    """
    threads = _check(threads, runs, warmup)
    out = {"bytes": len(tflite), "cpu_count": os.cpu_count(), "runs": runs,
           "warmup": warmup, "threads": {}}
    for t in threads:
        out["threads"][t] = _time({"model": tflite}, t, runs, warmup)["model"]
    return out


def format_table(result: dict) -> str:
    """A :func:`compare` result as an aligned text table."""
    from converters.tflite.inspect import text_table
    threads = list(next(iter(result["models"].values()))["threads"])
    headers = ["model", "bytes"]
    for t in threads:
        headers += [f"median ms ({t}T)", f"p90 ms ({t}T)", f"x ({t}T)"]
    rows = []
    for name, m in result["models"].items():
        row = [name, m["bytes"]]
        for t in threads:
            r = m["threads"][t]
            row += [r["median_ms"], r["p90_ms"], r["speedup"]]
        rows.append(row)
    return (f"LiteRT CPU latency, {result['runs']} runs, baseline "
            f"{result['baseline']}, host with {result['cpu_count']} CPUs\n"
            + text_table(headers, rows))
