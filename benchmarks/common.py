"""What every benchmark section shares: constants, logging, conversions
with the stock converter, arena and LUT measurements, the digits float model.
"""

from __future__ import annotations

import gzip
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY_RUNS = 200
OVERHEAD_EPOCHS = 8           # timed epochs, after 1 warm-up
CLI_REPEATS = 5


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


def gz(b: bytes) -> int:
    return len(gzip.compress(b, mtime=0))


def clone(model):
    from tfcompress.keras2.env import keras
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def tf_convert(model, x_calib=None, *, mode="int8"):
    """Plain tf.lite converter, as its docs show (no tfcompress code)."""
    from tfcompress.keras2.env import tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        def rep():
            for row in x_calib[:300]:
                yield [row[None, ...].astype(np.float32)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return bytes(conv.convert())


def litert_metric(tflite, x, y, metric="accuracy"):
    from converters.runtimes import litert
    from converters.runtimes import metrics as validate
    return validate.compare(litert.run(tflite, x).outputs, None, y).get(metric)


def arena_of(tflite):
    """(bisected minimum, recommended) or (None, None) with the reason."""
    from converters.runtimes import tflm
    try:
        lo = tflm.find_arena(tflite)
        return lo, lo + tflm.arena_margin(lo), ""
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return None, None, str(exc).splitlines()[0][:120]


def lut_flash(tflite):
    """(flash bytes with LUT, note, arena with LUT)."""
    from converters.encodings import lut
    try:
        out, st = lut.compress_clustered(tflite, verify=True)
    except Exception as exc:  # noqa: BLE001
        return len(tflite), f"LUT failed: {str(exc).splitlines()[0][:100]}", None
    if out is None or len(out) >= len(tflite):
        return len(tflite), "no LUT-eligible tensor (>16 values)", None
    return len(out), (f"LUT on {st['tensors_compressed']} tensors "
                      f"({max(st['bits'].values())}-bit indices); LUT model gzips to "
                      f"{gz(out):,} B; TFLM runs it (arena min "
                      f"{st.get('arena_after'):,} B: DECODE expands the "
                      "weights into the arena)"), st.get("arena_after")


# -- digits -----------------------------------------------------------------
def digits_base(res: dict, who: str):
    """The trained digits float model every section starts from: trained
    once per run (as ``make tflite`` trains it) and kept in ``res``."""
    from sample_models import digits
    if "digits_base" not in res:
        log(f"{who}: training digits float model ({digits.EPOCHS} epochs)")
        (x, y), _ = digits.load_data()
        base = digits.build_model()
        digits.compile_model(base)
        base.fit(x, y, epochs=digits.EPOCHS, batch_size=digits.BATCH_SIZE,
                 verbose=0)
        res["digits_base"] = base
    return res["digits_base"]


def fmt(v, spec=",") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def mark(ok) -> str:
    return "met" if ok else "**not met**"
