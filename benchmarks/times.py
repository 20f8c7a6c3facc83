"""Conversion, validation and CLI start-up times."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from benchmarks.common import (
    log,
)
from benchmarks.timing import median_seconds


def bench_times(res: dict) -> None:
    from converters import convert_bytes
    from converters.runtimes import litert, tflm
    from tfcompress.keras2.env import keras
    x, _ = res["digits_x"]
    base = res["digits_base"]
    t0 = time.perf_counter()
    i8 = convert_bytes(base, x, mode="int8")
    res["digits_convert_int8_s"] = time.perf_counter() - t0
    ref = litert.run(i8, x[:100], reference_kernels=True)
    t0 = time.perf_counter()
    rep = tflm.validate(i8, ref.raw_inputs, ref.raw_outputs)
    res["digits_tflm_validate_s"] = time.perf_counter() - t0
    res["digits_tflm_validate_n"] = 100
    res["digits_tflm_passed"] = rep.get("passed")

    dense = {}
    for label, (n_in, hidden) in (("10k", (64, 128)), ("1M", (1000, 1000))):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((n_in,)),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10)])
        calib = np.random.default_rng(0).normal(
            size=(100, n_in)).astype(np.float32)
        row = {"params": int(m.count_params())}
        for mode in ("float32", "int8"):
            t0 = time.perf_counter()
            b = convert_bytes(m, calib, mode=mode)
            row[mode] = (time.perf_counter() - t0, len(b))
        dense[label] = row
    res["dense_convert"] = dense


    exe = os.path.join(os.path.dirname(sys.executable), "tfcompress")
    cli = [exe, "--help"] if os.path.exists(exe) else \
        [sys.executable, "-m", "tfcompress.cli.main", "--help"]
    log("start-up: tfcompress --help vs import tensorflow")
    res["cli_help_s"] = median_seconds(cli)
    res["import_tf_s"] = median_seconds([sys.executable, "-c", "import tensorflow"])
    res["python_s"] = median_seconds([sys.executable, "-c", "pass"])


