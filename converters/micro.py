"""The microcontroller target: TensorFlow Lite Micro (TFLM) checks and validation.

Three jobs, in the order a user meets them:

1. :func:`check_compatible` refuses, before anything runs, a model TFLM
   cannot run: an op TFLM's ``MicroMutableOpResolver`` has no ``Add*`` method
   for (Flex ops, unknown custom ops, builtins TFLM lacks such as ``GELU``),
   float16 tensors, dynamic-range (hybrid) ops, float compute in a model meant
   to be full-integer, and tensors with dynamic (``-1``) dimensions.
2. :func:`resolver_methods` names the ``Add*`` calls a firmware needs.
3. :func:`validate` runs the model in the real TFLM interpreter (the
   ``tflite_micro`` wheel), compares with LiteRT outputs in LSB, and finds the
   smallest tensor arena by bisection.

Every interpreter run happens in a child process (:mod:`converters._micro_worker`):
TFLM given an undersized arena can crash the process with SIGSEGV.

Arena numbers are measured on the host (64-bit pointers, reference kernels).
On a 32-bit MCU the interpreter's own structs are smaller, so the host
minimum is usually an over-estimate there; optimized kernels (CMSIS-NN,
ESP-NN) may ask for larger scratch buffers than the reference kernels do, which
the margin only partly covers. Measure once on the device
(``MicroInterpreter::arena_used_bytes()``) before trimming further.

Example:
    >>> from converters import micro
    >>> micro.check_compatible(tflite_bytes)
    >>> micro.resolver_methods(micro_info)
    ['AddFullyConnected', 'AddSoftmax']
    >>> report = micro.validate(tflite_bytes, x_int8, reference=litert_out)
    >>> report["arena_bytes"], report["arena_recommended"], report["passed"]
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from converters import flatbuffer, sandbox
from converters.flatbuffer import ModelInfo, Operator

__all__ = [
    "ARENA_GRANULARITY",
    "ARENA_MARGIN",
    "BUILTIN_OPS",
    "CUSTOM_OPS",
    "MicroError",
    "arena_margin",
    "check_compatible",
    "find_arena",
    "layer_of",
    "resolver_methods",
    "run",
    "runs_with_arena",
    "validate",
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

ARENA_GRANULARITY = 16   # bytes; TFLM aligns arena allocations to 16
ARENA_MARGIN = 0.05      # recommended = minimum + 5% (rounded down to 16 B)
_ARENA_START = 1024      # first probe when no better hint exists
_ARENA_CEILING = 64 * 1024 * 1024  # no MCU has more; larger -> MicroError

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
            name = t.Name().decode("utf-8", "replace")
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


# ------------------------------------------------------ child processes ---

def _worker_cmd(args: Sequence[object]):
    return sandbox.python_command("converters._micro_worker", args)


def _call_worker(args: Sequence[object], timeout: float):
    cmd, env = _worker_cmd(args)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stderr


def _tflm_message(stderr: str) -> str:
    """The most telling line TFLM (or the worker) wrote to stderr."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    worker = [ln.split(":", 1)[1].strip() for ln in lines
              if ln.startswith("micro-worker:")]
    native = [ln for ln in lines if not ln.startswith(
        ("micro-worker:", "Traceback", "File ", "[RecordingMicroAllocator]"))]
    if native and worker:
        return f"{native[0]} ({worker[0]})"
    return (native or worker or ["no message"])[0]


def _describe_exit(code: int | None, stderr: str) -> str:
    if code is None:
        return stderr
    if code < 0:
        return sandbox.describe_exit(code, _tflm_message(stderr))
    return _tflm_message(stderr)


def _num_io(tflite: bytes):
    graph = _read_fb(tflite)
    return graph.InputsLength(), graph.OutputsLength()


def _probe(path: str, arena: int, n_inputs: int, timeout: float,
           report: bool = False):
    args = ["probe", path, arena, n_inputs] + (["--report"] if report else [])
    return _call_worker(args, timeout)


def runs_with_arena(tflite: bytes, arena_size: int, *,
                    timeout: float = 60.0) -> bool:
    """Whether TFLM allocates and invokes the model once with this arena.

    Runs in a child process; a crash (SIGSEGV on a too-small arena) or a
    timeout counts as ``False``.

    Example:
        >>> runs_with_arena(tflite_bytes, 4096)
        True
    """
    n_in, _ = _num_io(tflite)
    with tempfile.TemporaryDirectory(prefix="tfc-micro-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        code, _ = _probe(path, int(arena_size), n_in, timeout)
    return code == 0


def arena_margin(arena_min: int) -> int:
    """Margin added to the measured minimum arena: 5%, rounded down to 16 B.

    At least 16 bytes; never more than 5% of the minimum once the minimum is
    above 320 bytes (every real model's is).
    """
    g = ARENA_GRANULARITY
    return max(g, int(arena_min * ARENA_MARGIN) // g * g)


@contextlib.contextmanager
def _probe_server(path: str, n_inputs: int, timeout: float):
    """A worker that imports TFLM once and forks one child per probe.

    Yields ``ok(arena) -> bool``. Each probe still runs in its own process
    (a crash kills only that child), without paying Python start-up and
    imports every time.
    """
    cmd, env = _worker_cmd(["serve", path, n_inputs, max(1, int(timeout))])
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def ok(arena: int) -> bool:
        try:
            proc.stdin.write(f"{int(arena)}\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if not answer:
            raise MicroError(f"the TFLM probe server stopped (exit "
                             f"{proc.wait()}) while probing {arena} bytes")
        return int(answer) == 0

    try:
        yield ok
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _find_arena(path: str, n_inputs: int, timeout: float) -> int:
    g = ARENA_GRANULARITY
    code, err = _probe(path, _ARENA_CEILING, n_inputs, timeout, report=True)
    if code != 0:
        raise MicroError(
            f"TFLM could not run the model even with a "
            f"{_ARENA_CEILING // 2**20} MiB arena: {_describe_exit(code, err)}")
    match = re.search(r"Arena allocation total (\d+) bytes", err)
    hint = int(match.group(1)) if match else _ARENA_START
    start = max(g, -(-hint // g) * g)

    with _probe_server(path, n_inputs, timeout) as ok:
        return _bisect(ok, start)


def _bisect(ok, start: int) -> int:
    """Smallest multiple of 16 where ``ok`` holds, searching from ``start``."""
    g = ARENA_GRANULARITY
    if ok(start):
        hi, lo = start, start // 2 // g * g
        while lo > 0 and ok(lo):
            hi, lo = lo, lo // 2 // g * g
    else:
        lo, hi = start, start * 2
        while not ok(hi):
            lo, hi = hi, hi * 2
            if hi >= _ARENA_CEILING:
                hi = _ARENA_CEILING
                break
    # invariant: lo fails (or is 0), hi works; both multiples of g
    while hi - lo > g:
        mid = (lo + hi) // 2 // g * g
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def find_arena(tflite: bytes, *, timeout: float = 60.0) -> int:
    """The smallest tensor arena (multiple of 16 bytes) TFLM runs the model with.

    Bisection over probes (allocate + one invoke on zeros), each in its own
    process: first a run with a 64 MiB arena (which also reports TFLM's own
    arena accounting, used as the starting point), then doubling to a
    working size, then bisection at 16-byte granularity; probes after the
    first are forked from a server process that has imported TFLM already.
    Assumes that more arena never hurts.

    Raises:
        MicroError: the model does not run in TFLM at all (the message is
            TFLM's), or needs more than 64 MiB.
    """
    n_in, _ = _num_io(tflite)
    with tempfile.TemporaryDirectory(prefix="tfc-micro-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        return _find_arena(path, n_in, timeout)


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
