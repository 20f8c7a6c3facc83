"""A MobileNet-style 96x96x3 model (random weights): size and latency."""

from __future__ import annotations

import numpy as np

from benchmarks.common import (
    gz,
    log,
    tf_convert,
)


def bench_mobilenet(res: dict) -> None:
    from converters.runtimes import latency
    from tfcompress.keras2.env import keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((96, 96, 3))
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same",
                            activation="relu6")(inp)
    for filters, stride in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
        h = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same",
                                         activation="relu6")(h)
        h = keras.layers.Conv2D(filters, 1, activation="relu6")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(10)(h)
    model = keras.Model(inp, out, name="mobilenet_style")
    rng = np.random.default_rng(0)
    calib = rng.uniform(0, 1, (64, 96, 96, 3)).astype(np.float32)
    log("mobilenet-style: converting float32 / int8 / float16")
    blobs = {"float32": tf_convert(model, mode="float32"),
             "int8": tf_convert(model, calib, mode="int8"),
             "float16": tf_convert(model, mode="float16")}
    log("mobilenet-style: LiteRT latency, 1 thread")
    lat = latency.compare(blobs, threads=(1,), runs=100, warmup=10)
    res["mobilenet"] = {
        "params": int(model.count_params()),
        "rows": {k: {"bytes": len(b), "gzip": gz(b),
                     "lat": (lat["models"][k]["threads"][1]["median_ms"],
                             lat["models"][k]["threads"][1]["p90_ms"])}
                 for k, b in blobs.items()}}


