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


def representative_dataset(x, samples: int = CALIBRATION_SAMPLES):
    """A converter ``representative_dataset`` over the first ``samples``
    rows, one sample per step, in a fixed order.

    ``x`` is one array, a list with one array per model input, or a dict
    keyed by the signature's input names (fed by name: the .tflite may
    order its inputs differently); float arrays are fed as float32, integer
    arrays (token ids) keep their dtype.
    """
    names = list(x) if isinstance(x, dict) else None
    arrays = list(x.values()) if names else (
        list(x) if isinstance(x, (list, tuple)) else [x])
    from converters.conversion.signature import as_input
    arrays = [as_input(a)[:samples] for a in arrays]
    count = min(len(a) for a in arrays)

    def gen():
        with progress.bar(count, "calibration", unit="sample") as p:
            for i in range(count):
                rows = [a[i:i + 1] for a in arrays]
                yield dict(zip(names, rows)) if names else rows
                p.update()
    return gen


def _converter(model):
    """A converter for a SavedModel path, or for a Keras model traced with
    a fixed batch of 1 (:mod:`converters.conversion.signature`).

    A model with unrolled recurrent layers is converted from its frozen,
    folded function (:mod:`converters.conversion.frozen`; its signature
    kept): the weight-only ops of the steps fold (the split kernels of a
    Keras 3 LSTM, half the bytes) and no gate ``SPLIT`` stays float."""
    tf = _tf()
    if isinstance(model, str):
        return tf.lite.TFLiteConverter.from_saved_model(model)
    from converters.conversion import signature
    from converters.conversion.frozen import frozen_function
    from converters.conversion.recurrent import has_fused, has_unrolled
    if has_unrolled(model) and not has_fused(model):   # see frozen.py
        return tf.lite.TFLiteConverter.from_concrete_functions(
            [frozen_function(model)], tf.Module())
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [signature.serving_function(model)], signature.trackable(model))


def convert_bytes(model, representative_data: Optional[np.ndarray] = None,
                  *, mode: str = "int8", allow_float_fallback: bool = False,
                  unroll: bool = False) -> bytes:
    """Convert ``model`` (Keras model or SavedModel path) to .tflite bytes.

    Args:
        model: a ``tfcompress.keras`` model (QAT models included) or a
            SavedModel directory.
        representative_data: float inputs for calibration (``int8``,
            ``int16x8``); QAT models use it for the I/O quantization.
        mode: one of :data:`MODES`.
        allow_float_fallback: for ``int8``, let ops without an int8 kernel
            stay float (the result then fails :func:`check_int8`).
        unroll: unroll recurrent layers over their time steps
            (:func:`converters.conversion.recurrent.unrolled`); without it a
            recurrent layer that cannot be fused stops an int8 conversion
            with one line naming it.
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
        return _int4(convert_bytes(model, mode="float32", unroll=unroll))
    if not isinstance(model, str):
        from converters.conversion import recurrent
        if unroll:
            model = recurrent.unrolled(model)
        recurrent.check(model, mode)
    conv = _converter(model)
    if mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(
            _by_name(model, representative_data))
        conv.target_spec.supported_ops = (
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if allow_float_fallback else [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif mode == "int16x8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(
            _by_name(model, representative_data))
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = tf.int16
        conv.inference_output_type = tf.int16
    try:
        with quiet.captured_stderr():   # the calibrator's native log line
            return bytes(conv.convert())
    except Exception as exc:  # the converter raises ConverterError & co.
        raise ConversionError(_explain(exc, mode, model)) from None


def _by_name(model, x):
    """Several inputs of a Keras model: a dict keyed by input name."""
    if isinstance(model, str) or not isinstance(x, (list, tuple, dict)):
        return x
    from converters.conversion.signature import feed, input_names
    arrays = feed(model, x)
    if len(arrays) == 1:
        return arrays[0]
    return dict(zip(input_names(model), arrays))


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


def _explain(exc: Exception, mode: str, model=None) -> str:
    text = str(exc)
    ops = sorted({m.group(2) for m in _OP_RE.finditer(text)})
    layer = _layer_of(text, model)
    where = f"layer {layer}: " if layer else ""
    if ops:
        return (f"TFLite conversion ({mode}) failed: {where}op(s) "
                f"{', '.join(ops)} have no {mode} TFLite builtin kernel; "
                "replace the layer, or convert it with --mode float16/dynamic "
                "for CPU/GPU")
    first = next((l for l in text.splitlines() if "error" in l.lower()),
                 text.splitlines()[0] if text else type(exc).__name__)
    return f"TFLite conversion ({mode}) failed: {where}{first.strip()}"


_LOC_RE = re.compile(r'"([^"@]+)(?:@[^"]*)?"')


def _layer_of(text: str, model) -> str:
    """``'name' (Class)`` of the Keras layer an error location points at:
    the converter's locations are TF op names such as
    ``model/lstm/TensorArrayV2``, whose path names the layer."""
    if model is None or isinstance(model, str):
        return ""
    layers = {}
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        layers.setdefault(layer.name, type(layer).__name__)
        stack.extend(getattr(layer, "layers", []) or [])
    for match in _LOC_RE.finditer(text):
        for part in reversed(match.group(1).split("/")[:-1]):
            if part in layers:
                return f"{part!r} ({layers[part]})"
    return ""
