"""The microcontroller target: which models TensorFlow Lite Micro (TFLM) can run.

:func:`check_compatible` refuses, before anything runs, a model TFLM cannot
run: an op TFLM's ``MicroMutableOpResolver`` has no ``Add*`` method for
(Flex ops, unknown custom ops, builtins TFLM lacks such as ``GELU``), float16
tensors, dynamic-range (hybrid) ops, float compute in a model meant to be
full-integer, and tensors with dynamic (``-1``) dimensions.
:func:`resolver_methods` names the ``Add*`` calls a firmware needs.
Running the model in TFLM is :mod:`converters.runtimes.tflm`.

Example:
    >>> from converters.targets import micro
    >>> micro.check_compatible(tflite_bytes)
    >>> micro.resolver_methods(micro_info)
    ['AddFullyConnected', 'AddSoftmax']
"""

from __future__ import annotations


import numpy as np

from converters.tflite import flatbuffer
from converters.tflite.flatbuffer import ModelInfo, Operator

__all__ = [
    "BUILTIN_OPS",
    "CUSTOM_OPS",
    "MicroError",
    "check_compatible",
    "layer_of",
    "resolver_methods",
]


class MicroError(ValueError):
    """The model cannot run on TFLM, or the TFLM run failed."""


# TFLite builtin op name -> MicroMutableOpResolver method. From
# tensorflow/lite/micro/micro_mutable_op_resolver.h of tflite-micro, checked
# against the kernels (Register_*) in the pinned tflite-micro wheel.
BUILTIN_OPS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv", "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul",
    "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack",
    "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound", "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin",
    "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum",
    "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

# Custom op name (as in the flatbuffer) -> resolver method. TFLM_DECODE is
# what tflite_micro.compression inserts for LUT-compressed tensors.
CUSTOM_OPS: dict[str, str] = {
    "TFLM_DECODE": "AddDecode",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "SignalDelay": "AddDelay", "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction":
        "AddFilterBankSpectralSubtraction",
    "SignalFramer": "AddFramer", "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd", "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft", "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
}


_FIX = ("convert with full-integer int8 quantization (representative_dataset, "
        "supported_ops=[TFLITE_BUILTINS_INT8], int8 input/output)")
_NP_DTYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16,
              "INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32,
              "BOOL": np.bool_}
_FLOATS = ("FLOAT32", "FLOAT16", "FLOAT64")


# ----------------------------------------------------------------- checks --

def layer_of(info: ModelInfo, op: Operator) -> str:
    """The Keras layer an op came from, read from its tensor names.

    ``"sequential/dense_1/MatMul;sequential/dense_1/Relu"`` -> ``"dense_1"``.
    Output names like ``"StatefulPartitionedCall:0"`` carry no layer; then the
    op's constant inputs (weights) are tried.
    """
    names = [info.tensors[i].name for i in op.outputs if i >= 0]
    consts = [info.tensors[i] for i in op.inputs if i >= 0]
    names += [t.name for t in consts if t.is_constant]
    names += [t.name for t in consts if not t.is_constant]
    for name in names:
        parts = name.split(";")[0].split(":")[0].split("/")
        if len(parts) < 2:
            continue
        # "<model>/<layer>[/<nested layer>]/<TfOp>/...": Keras layer names
        # are snake_case by default, TF op names CamelCase (MatMul, Gelu).
        first_op = next((i for i in range(2, len(parts))
                         if parts[i][:1].isupper()), len(parts) - 1)
        return parts[first_op - 1]
    return names[0].split(";")[0] if names else f"op #{op.index}"


def _where(info: ModelInfo, op: Operator) -> str:
    return f"op #{op.index} {op.name} (layer {layer_of(info, op)!r})"


def _op_method(op: Operator) -> str | None:
    return CUSTOM_OPS.get(op.name) if op.custom else BUILTIN_OPS.get(op.name)


def _check_op(info: ModelInfo, op: Operator) -> None:
    where = _where(info, op)
    if op.name.startswith("Flex"):
        raise MicroError(
            f"{where} is a TensorFlow (Flex / SELECT_TF_OPS) op; TFLM has no "
            f"TensorFlow runtime: replace the layer with TFLite builtin ops "
            f"and convert without SELECT_TF_OPS")
    if _op_method(op) is None:
        kind = "custom op" if op.custom else "op"
        raise MicroError(
            f"{where}: TFLM has no kernel for {kind} {op.name!r} (not in "
            f"MicroMutableOpResolver); replace the layer with TFLM-supported "
            f"ops (see converters.micro.BUILTIN_OPS)")


def _check_types(info: ModelInfo, op: Operator, require_int8: bool) -> None:
    where = _where(info, op)
    ins = [info.tensors[i] for i in op.inputs if i >= 0]
    outs = [info.tensors[i] for i in op.outputs if i >= 0]
    if any(t.dtype == "FLOAT16" for t in ins + outs):
        raise MicroError(
            f"float16 model: {where} uses float16 tensors; TFLM cannot run "
            f"float16 models: {_FIX}")
    float_act = any(t.dtype in _FLOATS and not t.is_constant for t in ins)
    int_weight = any(t.is_constant and t.dtype in ("INT8", "UINT8", "INT4")
                     for t in ins)
    if float_act and int_weight and op.name != "DEQUANTIZE":
        raise MicroError(
            f"dynamic-range model: {where} takes float activations with int8 "
            f"weights; TFLM cannot run dynamic-range (hybrid) models: {_FIX}")
    if require_int8 and op.name not in ("QUANTIZE", "DEQUANTIZE"):
        bad = [t for t in ins + outs if t.dtype in _FLOATS]
        if bad:
            raise MicroError(
                f"float model: {where} computes in {bad[0].dtype} (tensor "
                f"{bad[0].name!r}); the micro target runs full-integer "
                f"models: {_FIX}")


def _read_fb(tflite: bytes):
    """The flatbuffer's first subgraph, parsed with TFLM's (light) schema."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    data = bytes(tflite)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise MicroError("not a TFLite flatbuffer (missing 'TFL3' identifier)")
    return schema.Model.GetRootAs(data, 0).Subgraphs(0)


def _check_dynamic_shapes(tflite: bytes) -> None:
    graph = _read_fb(tflite)
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = [int(s) for s in np.atleast_1d(t.ShapeAsNumpy())] \
            if t.ShapeLength() else []
        sig = [int(s) for s in np.atleast_1d(t.ShapeSignatureAsNumpy())] \
            if t.ShapeSignatureLength() else []
        # A -1 batch dimension is normal (the converter fixes it to 1 in
        # ``shape``); -1 elsewhere means a size TFLM cannot plan for.
        if any(s < 0 for s in shape) or any(s < 0 for s in sig[1:]):
            raw = t.Name()  # None once names are stripped
            name = raw.decode("utf-8", "replace") if raw else f"#{i}"
            raise MicroError(
                f"tensor {name!r} has a dynamic shape (signature {sig}); TFLM "
                f"plans memory ahead of time and needs fixed shapes: give the "
                f"Keras Input a fixed shape (only the batch may be None)")


def check_compatible(model: ModelInfo | bytes, *,
                     require_int8: bool = True) -> None:
    """Refuse, with one line naming the op and its layer, what TFLM can't run.

    Checks, op by op: the op is in TFLM's resolver (no Flex, no unknown custom
    op, no builtin TFLM lacks); no float16 tensor; no hybrid op (float
    activations with int8 weights, i.e. dynamic-range quantization); and with
    ``require_int8`` no float compute outside the QUANTIZE/DEQUANTIZE at the
    model boundary. Given bytes, it also refuses dynamic (``-1``) dimensions
    other than the batch. It does not check every per-kernel dtype
    combination: :func:`validate` runs the model and reports what TFLM's
    Prepare step refuses.

    Args:
        model: ``.tflite`` bytes, or a :class:`~converters.flatbuffer.ModelInfo`
            (then the shape-signature check is skipped).
        require_int8: refuse float32 compute (the micro target is
            full-integer). ``False`` lets float32 models through.

    Raises:
        MicroError: the first problem found.

    Example:
        >>> check_compatible(open("model.tflite", "rb").read())
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        info = flatbuffer.read(bytes(model))
        tflite: bytes | None = bytes(model)
    else:
        info, tflite = model, None
    if info.subgraphs > 1 and not any(op.name in ("IF", "WHILE", "CALL_ONCE")
                                      for op in info.operators):
        raise MicroError(f"model has {info.subgraphs} subgraphs but no control "
                         f"flow op; export a single-signature model for TFLM")
    for op in info.operators:
        _check_op(info, op)
    for op in info.operators:
        _check_types(info, op, require_int8)
    if tflite is not None:
        _check_dynamic_shapes(tflite)


def resolver_methods(info: ModelInfo | bytes) -> list[str]:
    """The ``MicroMutableOpResolver`` methods the model needs, sorted, unique.

    Example:
        >>> resolver_methods(info)
        ['AddFullyConnected', 'AddSoftmax']
    """
    if not isinstance(info, ModelInfo):
        info = flatbuffer.read(bytes(info))
    methods = set()
    for op in info.operators:
        method = _op_method(op)
        if method is None:
            raise MicroError(f"{_where(info, op)}: TFLM has no kernel for "
                             f"{op.name!r}; run check_compatible first")
        methods.add(method)
    return sorted(methods)
