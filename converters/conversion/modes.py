"""Keras model -> .tflite bytes, per target and quantization mode.

Modes (``mode=``):

=========  ==========================================  ====================
mode       what                                        runs on
=========  ==========================================  ====================
int8       full-integer, int8 in/out, int8 builtins    TFLM, XNNPACK, NPUs
float16    float16 weights, float32 compute            GPU delegate
dynamic    int8 weights, float activations             CPU (not TFLM)
int16x8    int16 activations, int8 weights             CPU, TFLM (some ops)
float32    no quantization                             reference
int4       4-bit weights, float activations            CPU (not TFLM)
           (ai-edge-quantizer ``dynamic_wi4_afp32``)
=========  ==========================================  ====================
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from converters import progress
from converters.loading import quiet
from converters.errors import ConversionError

MODES = ("int8", "float16", "dynamic", "int16x8", "float32", "int4")
TARGETS = ("micro", "android")
#: samples of representative data used for calibration at most
CALIBRATION_SAMPLES = 500
_NEEDS_DATA = ("int8", "int16x8")


def _tf():
    from converters.loading.kerasenv import tf
    return tf


class SavedModelPredictor:
    """``predict`` for a SavedModel directory (its ``serving_default``
    signature), so a converted SavedModel is compared with its float
    source like a Keras model is."""

    def __init__(self, path: str):
        self.path = path
        self._fn = None

    def predict(self, x, verbose=0, batch_size=256):
        tf = _tf()
        if self._fn is None:
            self._fn = tf.saved_model.load(self.path).signatures[
                "serving_default"]
        outs = []
        for i in range(0, len(x), batch_size):
            result = self._fn(tf.constant(x[i:i + batch_size]))
            if len(result) != 1:
                raise ValueError(f"{self.path}: validation supports one "
                                 f"output; the SavedModel has {len(result)}")
            outs.append(next(iter(result.values())).numpy())
        return np.concatenate(outs)


def representative_dataset(x: np.ndarray, samples: int = CALIBRATION_SAMPLES):
    """A converter ``representative_dataset`` over the first ``samples``
    rows of ``x``, one sample per step, in a fixed order."""
    data = np.asarray(x, dtype=np.float32)[:samples]

    def gen():
        with progress.bar(len(data), "calibration", unit="sample") as p:
            for row in data:
                yield [row[None, ...]]
                p.update()
    return gen


def _converter(model):
    tf = _tf()
    if isinstance(model, str):
        return tf.lite.TFLiteConverter.from_saved_model(model)
    return tf.lite.TFLiteConverter.from_keras_model(model)


def convert_bytes(model, representative_data: Optional[np.ndarray] = None,
                  *, mode: str = "int8", allow_float_fallback: bool = False
                  ) -> bytes:
    """Convert ``model`` (Keras model or SavedModel path) to .tflite bytes.

    Args:
        model: a ``tfcompress.keras`` model (QAT models included) or a
            SavedModel directory.
        representative_data: float inputs for calibration (``int8``,
            ``int16x8``); QAT models use it for the I/O quantization.
        mode: one of :data:`MODES`.
        allow_float_fallback: for ``int8``, let ops without an int8 kernel
            stay float (the result then fails :func:`check_int8`).
    """
    tf = _tf()
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {list(MODES)}")
    if mode in _NEEDS_DATA:
        if representative_data is None or len(representative_data) == 0:
            raise ValueError(
                f"mode {mode!r} needs representative data: pass a non-empty "
                "array of model inputs (e.g. 100-500 training samples)")
    if mode == "int4":
        return _int4(convert_bytes(model, mode="float32"))
    conv = _converter(model)
    if mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(
            representative_data)
        conv.target_spec.supported_ops = (
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if allow_float_fallback else [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif mode == "int16x8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(
            representative_data)
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = tf.int16
        conv.inference_output_type = tf.int16
    try:
        with quiet.captured_stderr():   # the calibrator's native log line
            return bytes(conv.convert())
    except Exception as exc:  # the converter raises ConverterError & co.
        raise ConversionError(_explain(exc, mode)) from None


def _int4(float_tflite: bytes) -> bytes:
    """4-bit weights (per channel), float activations, with LiteRT's
    ai-edge-quantizer: the weight-only route the TFLite converter lacks."""
    import ai_edge_quantizer
    from ai_edge_quantizer import recipe

    quantizer = ai_edge_quantizer.Quantizer(float_tflite)
    quantizer.load_quantization_recipe(recipe.dynamic_wi4_afp32())
    try:
        return bytes(quantizer.quantize().quantized_model)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"int4 quantization failed: {first}") from None


_OP_RE = re.compile(r"'(tf|tfl)\.(\w+)'")


def _explain(exc: Exception, mode: str) -> str:
    text = str(exc)
    ops = sorted({m.group(2) for m in _OP_RE.finditer(text)})
    where = re.search(r'loc\("([^"]+)"', text)
    layer = f" (at {where.group(1)})" if where else ""
    if ops:
        return (f"TFLite conversion ({mode}) failed: op(s) {', '.join(ops)}"
                f"{layer} have no {mode} TFLite builtin kernel; replace the "
                "layer, or skip it with --mode float16/dynamic for CPU/GPU")
    first = next((l for l in text.splitlines() if "error" in l.lower()),
                 text.splitlines()[0] if text else type(exc).__name__)
    return f"TFLite conversion ({mode}) failed: {first.strip()}"
