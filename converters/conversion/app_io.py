"""Full-integer int8 models with the I/O types app runtimes accept.

Inside, every op computes in int8 (``TFLITE_BUILTINS_INT8``); at the edges
the model takes and gives ``uint8``, ``int8`` or ``float32`` tensors
(MediaPipe Tasks' image tasks accept uint8 or float32 images, not int8).

For an image model the input quantization can be pinned to the pixel grid:
with ``input_range=((0 - mean) / std, (255 - mean) / std)`` the calibrated
minimum and maximum of the input are replaced by that range before the
model is quantized, so a uint8 input tensor gets ``scale = 1 / std`` and
``zero_point = mean``: the raw pixel ``p`` fed as it is represents
``(p - mean) / std``, the normalization the app would otherwise apply. The
mapping is exact when ``mean`` is an integer (0 for ``0,255``); otherwise
the quantizer rounds the zero point to the nearest integer (half a pixel at
most).

Post-training quantization goes calibrate -> pin the input range ->
quantize with TF's own calibrator and MLIR quantizer (the steps
``TFLiteConverter.convert`` runs, with the range set in between). A QAT
model brings its input range from training; its uint8 input tensor then
gets the pinned scale and zero point directly, and its QUANTIZE op
requantizes to the trained input scale.

Example:
    >>> data = convert_app_io(model, x[:200], io="uint8",
    ...                       input_range=(0.0, 1.0))   # --normalization 0,255
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple

import numpy as np

from converters.conversion.modes import (_converter, _explain, _tf,
                                         representative_dataset)
from converters.errors import ConversionError

IO_TYPES = ("uint8", "int8", "float32")


def convert_app_io(model, representative_data: np.ndarray, *,
                   io: str = "uint8", output_io: Optional[str] = None,
                   input_range: Optional[Tuple[float, float]] = None
                   ) -> bytes:
    """Convert ``model`` to full-integer int8 with ``io`` typed edges.

    Args:
        model: a Keras model (plain, stripped or QAT) or a SavedModel path.
        representative_data: float model inputs for calibration.
        io: input type, one of :data:`IO_TYPES`.
        output_io: output type (default: ``io``).
        input_range: ``(lo, hi)`` float range the input tensor must cover
            exactly (the normalized images of pixels 0 and 255), or None for
            the calibrated range.

    Returns:
        .tflite bytes with the converter's ``serving_default`` signature.
    """
    output_io = output_io or io
    for name, value in (("io", io), ("output io", output_io)):
        if value not in IO_TYPES:
            raise ValueError(f"unknown {name} type {value!r}; valid: "
                             f"{list(IO_TYPES)}")
    if representative_data is None or len(representative_data) == 0:
        raise ValueError("an int8 model needs representative data: pass a "
                         "non-empty array of model inputs")
    tf = _tf()
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset(representative_data)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv._experimental_calibrate_only = True  # pylint: disable=protected-access
    try:
        calibrated = _run(conv)
    except Exception as exc:
        raise ConversionError(_explain(exc, "int8")) from None
    if _has_calibration(calibrated):
        data = _quantize(calibrated, io, output_io, input_range)
        return _pin(data, io, input_range)
    # A QAT model: the converter quantizes with the trained ranges.
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset(representative_data)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = getattr(tf, io)
    conv.inference_output_type = getattr(tf, output_io)
    try:
        data = _run(conv)
    except Exception as exc:
        raise ConversionError(_explain(exc, "int8")) from None
    return _pin(data, io, input_range)


def input_quantization(input_range: Sequence[float], io: str
                       ) -> Tuple[float, int]:
    """``(scale, zero_point)`` of a ``io`` input tensor spanning
    ``input_range`` over its 256 levels (zero point rounded)."""
    lo, hi = float(input_range[0]), float(input_range[1])
    scale = (hi - lo) / 255.0
    offset = -128 if io == "int8" else 0
    return scale, int(np.clip(round(offset - lo / scale), offset,
                              offset + 255))


def _run(conv) -> bytes:
    with warnings.catch_warnings():  # "statistics for quantized inputs"
        warnings.simplefilter("ignore", UserWarning)
        return bytes(conv.convert())


def _has_calibration(calibrated: bytes) -> bool:
    """Whether every input tensor of the calibrated model has min/max."""
    model = _object(calibrated)
    graph = model.subgraphs[0]
    return all(graph.tensors[i].quantization is not None
               and graph.tensors[i].quantization.min is not None
               and len(graph.tensors[i].quantization.min)
               for i in graph.inputs)


def _quantize(calibrated: bytes, io: str, output_io: str,
              input_range: Optional[Tuple[float, float]]) -> bytes:
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.tools import flatbuffer_utils
    tf = _tf()
    if input_range is not None:
        model = _object(calibrated)
        graph = model.subgraphs[0]
        for index in graph.inputs:
            quant = graph.tensors[index].quantization
            quant.min = np.array([min(input_range)], np.float32)
            quant.max = np.array([max(input_range)], np.float32)
        calibrated = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    try:
        with warnings.catch_warnings():  # "statistics for quantized inputs"
            warnings.simplefilter("ignore", UserWarning)
            return bytes(tfl_convert.mlir_quantize(
                calibrated, False, input_data_type=getattr(tf, io),
                output_data_type=getattr(tf, output_io)))
    except Exception as exc:
        raise ConversionError(_explain(exc, "int8")) from None


def _pin(data: bytes, io: str,
         input_range: Optional[Tuple[float, float]]) -> bytes:
    """Make each quantized input span ``input_range`` on its 256 levels.

    Post-training quantization already did (the calibrated range was
    replaced). A QAT model keeps its trained input range; a uint8 input is
    then given the pixel grid, and the QUANTIZE op behind it (uint8 ->
    int8) requantizes to the trained scale. An int8 input of a QAT model is
    left as trained (its scale is in the model for the app to use).
    """
    from tensorflow.lite.tools import flatbuffer_utils
    if input_range is None or io == "float32":
        return data
    scale, zero = input_quantization(input_range, io)
    model = _object(data)
    graph = model.subgraphs[0]
    quantize = {i for i, code in enumerate(model.operatorCodes)
                if max(code.builtinCode, code.deprecatedBuiltinCode) == 114}
    fed = {op.inputs[0] for op in graph.operators
           if op.opcodeIndex in quantize}
    changed = False
    for index in graph.inputs:
        quant = graph.tensors[index].quantization
        if quant is None or quant.scale is None or not len(quant.scale):
            continue
        if np.isclose(quant.scale[0], scale, rtol=1e-6) and \
                int(quant.zeroPoint[0]) == zero:
            continue
        if io != "uint8" or index not in fed:
            continue
        quant.scale = np.array([scale], np.float32)
        quant.zeroPoint = np.array([zero], np.int64)
        changed = True
    if not changed:
        return data
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _object(data: bytes):
    from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))
