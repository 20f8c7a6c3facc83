"""Which ops of a .tflite the TFLite GPU delegate takes, and which stay on CPU.

The analyzers shipped with TF/LiteRT (``tf.lite.experimental.Analyzer`` with
``gpu_compatibility=True``) call every op of a model GPU-compatible, Flex ops
included, so this module keeps its own allowlist. It follows the delegate's
own checks: ``tensorflow/lite/tools/versioning/gpu_compatibility.cc``
(``CheckGpuDelegateCompatibility``: the op switch and its per-op conditions)
and ``delegates/gpu/common/model_builder.cc`` (``IsAllAllowedTensors``:
runtime tensors must be float32/float16, or int8/uint8 with quantized-model
support, and of rank < 5; the largest partition only is delegated).

Quantized models: the GPU computes only in float. With quantized-model
support on (``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT``, set in
``TfLiteGpuDelegateOptionsV2Default``) the delegate gives the GPU a
"floating-point view" of an int8 or dynamic-range model: constant weights are
dequantized once, int8 activations are fake-quantized between ops. Such a
model runs on the GPU, but with float kernels and no int8 speed-up, so
:func:`check` accepts it (``allow_quantized=True``, the delegate's default)
and says so in ``note``; the float16 variant is what to ship for the GPU.
int16 activations (``int16x8``) have no GPU path at all.

Example:
    >>> info = flatbuffer.read(tflite)
    >>> cpu_fallback_ops(info)
    [{'op': 'FlexMatrixDeterminant', 'index': 0, 'reason': 'Flex op ...'}]
"""

from __future__ import annotations

from collections.abc import Callable

from converters.tflite.flatbuffer import ModelInfo, Operator

_FLOAT = ("FLOAT32", "FLOAT16")
_QUANT = ("INT8", "UINT8")

_UNARY = ("ABS", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC",
          "NEG", "RSQRT", "SIGN", "SIN", "SQRT", "SQUARE", "TANH")
_BINARY = ("DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER",
           "GREATER_EQUAL", "LOGICAL_AND", "LESS", "LESS_EQUAL", "MAXIMUM",
           "MINIMUM", "NOT_EQUAL", "POW", "SQUARED_DIFFERENCE", "SUB")
_COMPARE = ("EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL",
            "NOT_EQUAL", "LOGICAL_AND")
_OTHER = ("ADD", "ADD_N", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST",
          "CONCATENATION", "CONV_2D", "CUMSUM", "DENSIFY", "DEPTHWISE_CONV_2D",
          "DEPTH_TO_SPACE", "DEQUANTIZE", "FULLY_CONNECTED", "GATHER",
          "HARD_SWISH", "LEAKY_RELU", "LSTM", "MAX_POOL_2D", "MEAN",
          "MIRROR_PAD", "MUL", "ONE_HOT", "PACK", "PAD", "PADV2", "PRELU",
          "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "RELU",
          "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
          "RESIZE_NEAREST_NEIGHBOR", "SELECT", "SELECT_V2", "SLICE", "SOFTMAX",
          "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SUM", "TILE",
          "TRANSPOSE", "TRANSPOSE_CONV")
#: builtin ops the GPU delegate has a kernel for (gpu_compatibility.cc).
SUPPORTED_OPS = frozenset(_UNARY + _BINARY + _OTHER)
#: custom (non-builtin) ops the GPU delegate implements.
SUPPORTED_CUSTOM_OPS = frozenset((
    "Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D",
    "Resampler"))
#: runtime tensor dtypes beyond float that particular ops accept.
_EXTRA_DTYPES = {
    "CAST": ("INT32", "BOOL"), "SELECT": ("BOOL",), "SELECT_V2": ("BOOL",),
    "ONE_HOT": ("INT32",), "GATHER": ("INT32",),
    **{name: ("BOOL",) for name in _COMPARE},
}
#: at most this many dimensions per runtime tensor.
MAX_RANK = 4

REASON_FLEX = ("Flex (TF Select) op: runs only in the TF kernel library on "
               "CPU; no GPU kernel")
REASON_CUSTOM = "custom op without a GPU kernel"
REASON_NO_KERNEL = "no GPU delegate kernel for this op"
REASON_PARTITION = ("outside the largest GPU partition: the delegate takes "
                    "only the largest one by default (max_delegated_"
                    "partitions=1), the rest runs on CPU")


def _runtime(info: ModelInfo, indices: list[int]):
    return [info.tensors[i] for i in indices
            if i >= 0 and not info.tensors[i].is_constant]


def _const_input(index: int, what: str) -> Callable:
    def check(info: ModelInfo, op: Operator) -> str | None:
        if len(op.inputs) <= index or op.inputs[index] < 0 or \
                not info.tensors[op.inputs[index]].is_constant:
            return f"{op.name} runs on GPU only with a constant {what}"
        return None
    return check


def _rank_3_or_4(info: ModelInfo, op: Operator) -> str | None:
    rank = len(info.tensors[op.inputs[0]].shape)
    if rank not in (3, 4):
        return f"{op.name} runs on GPU only on 3-D/4-D tensors, got {rank}-D"
    return None


def _two_inputs(info: ModelInfo, op: Operator) -> str | None:
    if len([i for i in op.inputs if i >= 0]) != 2:
        return f"{op.name} runs on GPU only with exactly two inputs"
    return None


def _pad(info: ModelInfo, op: Operator) -> str | None:
    if len(op.inputs) < 2 or not info.tensors[op.inputs[1]].is_constant:
        return "PAD runs on GPU only with constant paddings"
    shape = info.tensors[op.inputs[1]].shape
    if len(shape) != 2 or shape[0] not in (3, 4) or shape[1] != 2:
        return f"PAD runs on GPU only with 3x2 or 4x2 paddings, got {shape}"
    return None


def _dequantize(info: ModelInfo, op: Operator) -> str | None:
    if info.tensors[op.inputs[0]].dtype == "INT16":
        return "DEQUANTIZE from int16 has no GPU kernel"
    return None


def _cast(info: ModelInfo, op: Operator) -> str | None:
    src = info.tensors[op.inputs[0]].dtype
    dst = info.tensors[op.outputs[0]].dtype
    ok = ((src == "BOOL" and dst in _FLOAT)
          or (src in _FLOAT and dst == "BOOL")
          or (src in ("FLOAT32", "INT32") and dst in ("FLOAT32", "INT32")))
    return None if ok else f"CAST {src} -> {dst} has no GPU kernel"


#: per-op conditions (a subset of gpu_compatibility.cc that the flatbuffer
#: shows without decoding builtin options).
_CONDITIONS: dict[str, Callable] = {
    "ADD": _two_inputs, "MUL": _two_inputs, "ADD_N": _two_inputs,
    "MEAN": _const_input(1, "axis"), "SUM": _const_input(1, "axis"),
    "REDUCE_MAX": _const_input(1, "axis"),
    "REDUCE_MIN": _const_input(1, "axis"),
    "REDUCE_PROD": _const_input(1, "axis"),
    "SLICE": _rank_3_or_4, "STRIDED_SLICE": _rank_3_or_4,
    "PAD": _pad, "PADV2": _pad, "MIRROR_PAD": _pad,
    "DEQUANTIZE": _dequantize, "CAST": _cast,
}


def op_reason(info: ModelInfo, op: Operator, *,
              allow_quantized: bool = True) -> str | None:
    """Why ``op`` cannot run on the GPU delegate, or ``None`` if it can."""
    if op.custom:
        if op.name.startswith("Flex"):
            return REASON_FLEX
        if op.name not in SUPPORTED_CUSTOM_OPS:
            return REASON_CUSTOM
    elif op.name not in SUPPORTED_OPS:
        return REASON_NO_KERNEL
    allowed = _FLOAT + (_QUANT if allow_quantized else ()) + \
        _EXTRA_DTYPES.get(op.name, ())
    for t in _runtime(info, op.inputs + op.outputs):
        if t.dtype not in allowed:
            if t.dtype in _QUANT:
                return (f"{t.dtype.lower()} tensor {t.name!r}: quantized "
                        "tensors need the delegate's quantized-model support")
            return (f"{t.dtype.lower()} tensor {t.name!r}: the GPU runs "
                    "float32/float16 tensors only")
        if len(t.shape) > MAX_RANK:
            return (f"{len(t.shape)}-D tensor {t.name!r}: the GPU takes at "
                    f"most {MAX_RANK}-D tensors")
    condition = _CONDITIONS.get(op.name)
    return condition(info, op) if condition else None


def _partitions(info: ModelInfo, supported: list[bool]) -> list[list[int]]:
    """Split the ops into alternating GPU / CPU subsets the way TFLite's
    partitioner does (``PartitionGraphIntoIndependentNodeSubsets``): take every
    op of the current kind whose inputs are ready, then switch kind."""
    produced = {x for op in info.operators for x in op.outputs}
    ready = {t.index for t in info.tensors if t.index not in produced}
    left = list(range(len(info.operators)))
    subsets: list[list[int]] = []
    kind = supported[0] if supported else True
    idle = 0
    while left and idle < 2:
        taken = []
        progress = True
        while progress:
            progress = False
            for i in list(left):
                op = info.operators[i]
                if supported[i] == kind and all(
                        x < 0 or x in ready for x in op.inputs):
                    taken.append(i)
                    left.remove(i)
                    ready.update(op.outputs)
                    progress = True
        if kind:
            subsets.append(taken)
        idle = 0 if taken else idle + 1
        kind = not kind
    return [s for s in subsets if s]


def _analyse(info: ModelInfo, allow_quantized: bool):
    reasons = [op_reason(info, op, allow_quantized=allow_quantized)
               for op in info.operators]
    rows = [{"op": op.name, "index": op.index, "reason": r}
            for op, r in zip(info.operators, reasons) if r]
    parts = _partitions(info, [r is None for r in reasons])
    if len(parts) > 1:
        largest = max(parts, key=len)
        for part in parts:
            if part is not largest:
                rows += [{"op": info.operators[i].name, "index": i,
                          "reason": REASON_PARTITION} for i in part]
    return sorted(rows, key=lambda r: r["index"]), parts


def cpu_fallback_ops(info: ModelInfo, *, allow_quantized: bool = True
                     ) -> list[dict]:
    """Ops of ``info`` that the GPU delegate leaves to the CPU.

    Args:
        info: a model read with :func:`converters.flatbuffer.read`.
        allow_quantized: the delegate's quantized-model support (on by
            default in ``TfLiteGpuDelegateOptionsV2Default``).

    Returns:
        ``[{"op": name, "index": operator index, "reason": why}]`` in
        execution order; empty when the whole graph is delegated.
    """
    return _analyse(info, allow_quantized)[0]


def check(info: ModelInfo, *, allow_quantized: bool = True) -> dict:
    """The GPU delegate verdict for a model.

    Returns:
        ``{"compatible": bool, "delegated_ops": n, "fallback_ops": [...],
        "partitions": n, "note": str}``; ``compatible`` means every op runs
        on the GPU.
    """
    fallback, parts = _analyse(info, allow_quantized)
    runtime = {t.dtype for t in info.tensors if not t.is_constant}
    if "INT16" in runtime:
        note = "int16 activations: no GPU path; use the float16 variant"
    elif runtime & set(_QUANT) or any(
            t.is_constant and t.dtype in _QUANT and t.scale
            for t in info.tensors):
        note = ("quantized model: the GPU runs it through the delegate's "
                "float view (weights dequantized, activations fake-quantized)"
                ", float kernels and no int8 speed-up; ship the float16 "
                "variant for the GPU")
    elif any(t.dtype == "FLOAT16" for t in info.tensors):
        note = "float16 weights: the delegate's native precision"
    else:
        note = "float32 model: runs natively (fp16 precision if allowed)"
    return {"compatible": not fallback,
            "delegated_ops": len(info.operators) - len(fallback),
            "fallback_ops": fallback, "partitions": len(parts),
            "note": note}
