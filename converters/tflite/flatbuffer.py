"""Read a .tflite flatbuffer into plain Python: ops, tensors, dtypes, sizes.

Uses TF's flatbuffer utilities (``tensorflow.lite.tools.flatbuffer_utils``)
for parsing; everything the rest of the toolkit needs to know about a
``.tflite`` (int8 check, TFLM compatibility, resolver emission, ``inspect``)
is read through :func:`read`.
"""

from __future__ import annotations

import dataclasses
import mmap
from typing import Dict, List, Optional

import numpy as np

_DTYPES = {  # TensorType name -> numpy dtype
    "FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32,
    "UINT8": np.uint8, "INT64": np.int64, "INT16": np.int16,
    "INT8": np.int8, "FLOAT64": np.float64, "BOOL": np.bool_,
    "UINT32": np.uint32, "UINT16": np.uint16,
}


class InvalidModelError(ValueError):
    """The bytes are not a readable TFLite flatbuffer."""


@dataclasses.dataclass
class Tensor:
    index: int
    name: str
    dtype: str
    shape: List[int]
    buffer_bytes: int
    scale: List[float]
    zero_point: List[int]
    quantized_dimension: int
    is_variable: bool
    data: Optional[np.ndarray] = None  # constant tensors only

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    def to_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "data"}
        if len(self.scale) > 4:
            d["scale"] = f"{len(self.scale)} per-channel scales"
            d["zero_point"] = f"{len(self.zero_point)} per-channel zero points"
        return d


@dataclasses.dataclass
class Operator:
    index: int
    name: str  # builtin name, or the custom code / Flex op name
    custom: bool
    inputs: List[int]
    outputs: List[int]
    version: int


@dataclasses.dataclass
class ModelInfo:
    size: int
    tensors: List[Tensor]
    operators: List[Operator]
    inputs: List[int]
    outputs: List[int]
    signatures: Dict[str, dict]
    subgraphs: int
    description: str

    @property
    def op_names(self) -> List[str]:
        return [op.name for op in self.operators]

    def op_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for op in self.operators:
            counts[op.name] = counts.get(op.name, 0) + 1
        return dict(sorted(counts.items()))

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    @property
    def input_details(self) -> List[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_details(self) -> List[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    @property
    def weight_bytes(self) -> int:
        return sum(t.buffer_bytes for t in self.tensors if t.is_constant)


def _decode(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) \
        else str(value or "")


def read(tflite: bytes) -> ModelInfo:
    """Parse ``tflite`` bytes. Raises :class:`InvalidModelError` when the
    bytes are not a TFLite flatbuffer or refer outside themselves."""
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    data = tflite if isinstance(tflite, (bytes, mmap.mmap)) else bytes(tflite)
    if len(data) < 8 or not schema_fb.Model.ModelBufferHasIdentifier(data, 0):
        raise InvalidModelError(
            "not a TFLite flatbuffer (missing 'TFL3' file identifier)")
    try:
        # constant buffers become numpy views of ``data``, not copies
        model = flatbuffer_utils.read_model_from_bytearray(data)
        return _info(model, len(data), schema_fb, flatbuffer_utils)
    except InvalidModelError:
        raise
    except Exception as exc:  # flatbuffers raises many kinds on bad offsets
        raise InvalidModelError(
            f"corrupt TFLite flatbuffer ({type(exc).__name__}: {exc})"
        ) from None


def _info(model, size, schema_fb, fbu) -> ModelInfo:
    if not model.subgraphs:
        raise InvalidModelError("TFLite model has no subgraph")
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema_fb.TensorType).items()
             if not k.startswith("_")}
    tensors = []
    for i, t in enumerate(graph.tensors or []):
        q = t.quantization
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        raw = buf.data if buf is not None and buf.data is not None else None
        dtype = names.get(t.type, f"TYPE_{t.type}")
        shape = [int(s) for s in (t.shape if t.shape is not None else [])]
        array = None
        if raw is not None and len(raw) and dtype in _DTYPES:
            array = np.frombuffer(bytes(raw), dtype=_DTYPES[dtype])
            if shape and int(np.prod(shape)) == array.size:
                array = array.reshape(shape)
        tensors.append(Tensor(
            index=i, name=_decode(t.name), dtype=dtype, shape=shape,
            buffer_bytes=len(raw) if raw is not None else 0,
            scale=[float(s) for s in (q.scale if q is not None and
                                      q.scale is not None else [])],
            zero_point=[int(z) for z in (q.zeroPoint if q is not None and
                                         q.zeroPoint is not None else [])],
            quantized_dimension=int(q.quantizedDimension) if q else 0,
            is_variable=bool(t.isVariable), data=array))
    ops = []
    for i, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = fbu.opcode_to_name(model, op.opcodeIndex) or f"OP_{builtin}"
        custom = name == "CUSTOM"
        if custom:
            name = _decode(code.customCode) or "CUSTOM"
        ops.append(Operator(i, name, custom,
                            [int(x) for x in (op.inputs if op.inputs is not None else [])],
                            [int(x) for x in (op.outputs if op.outputs is not None else [])],
                            int(code.version)))
    signatures = {}
    for sig in model.signatureDefs or []:
        signatures[_decode(sig.signatureKey)] = {
            "inputs": {_decode(t.name): int(t.tensorIndex)
                       for t in sig.inputs or []},
            "outputs": {_decode(t.name): int(t.tensorIndex)
                        for t in sig.outputs or []},
        }
    return ModelInfo(size=size, tensors=tensors, operators=ops,
                     inputs=[int(i) for i in graph.inputs],
                     outputs=[int(i) for i in graph.outputs],
                     signatures=signatures, subgraphs=len(model.subgraphs),
                     description=_decode(model.description))


def float_ops(info: ModelInfo) -> List[str]:
    """Ops that compute on float tensors: ``["NAME (tensor 'x' FLOAT32)"]``.

    In a full-integer model only the boundary ops QUANTIZE/DEQUANTIZE may
    touch float tensors, and only when the model's I/O is float.
    """
    bad = []
    for op in info.operators:
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for idx in op.inputs + op.outputs:
            if idx < 0:
                continue
            t = info.tensors[idx]
            if t.dtype in ("FLOAT32", "FLOAT16", "FLOAT64"):
                bad.append(f"{op.name} (tensor {t.name!r} {t.dtype})")
                break
    return bad


def constant_stats(t: Tensor, weight_axis: Optional[int] = None) -> dict:
    """Sparsity (fraction of values that are real zeros: the zero point for
    quantized tensors) and unique values, also per output channel."""
    values = np.asarray(t.data)
    axis = t.quantized_dimension if len(t.scale) > 1 else weight_axis
    if axis is not None and not (values.ndim > axis and
                                 values.shape[axis] > 1):
        axis = None
    zero = np.zeros(values.shape, values.dtype)
    if t.zero_point and any(t.zero_point):
        if len(t.zero_point) > 1 and axis is not None and \
                len(t.zero_point) == values.shape[axis]:
            shape = [1] * values.ndim
            shape[axis] = -1
            zero = np.reshape(np.asarray(t.zero_point, values.dtype), shape)
        else:
            zero = np.asarray(t.zero_point[0], values.dtype)
    stats = {"sparsity": round(float(np.mean(values == zero)), 6),
             "unique": int(np.unique(values).size)}
    if axis is not None:
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        stats["unique_per_channel_max"] = max(int(np.unique(r).size)
                                              for r in rows)
        stats["channel_axis"] = axis
    return stats


def weight_stats(info: ModelInfo) -> List[dict]:
    """Per constant weight tensor (rank >= 2): layer, dtype, shape, sparsity
    and unique values (the max over channels for per-channel quantized
    tensors, where each channel has its own scale)."""
    rows = []
    for t in info.tensors:
        if not t.is_constant or t.data.ndim < 2 or t.dtype not in (
                "INT8", "FLOAT32", "FLOAT16", "INT16"):
            continue
        stats = constant_stats(t)
        per_channel = "unique_per_channel_max" in stats
        rows.append({"layer": layer_name(t.name), "tensor": t.name,
                     "dtype": t.dtype.lower(), "shape": list(t.shape),
                     "sparsity": stats["sparsity"],
                     "unique": stats.get("unique_per_channel_max",
                                         stats["unique"]),
                     "per_channel": per_channel})
    return rows


def layer_name(tensor_name: str) -> str:
    """The Keras layer a converter-named tensor came from:
    ``'digits/fc1/MatMul;...'`` -> ``'fc1'``."""
    first = tensor_name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    if len(parts) > 2:
        return parts[1]
    return parts[0] if parts else tensor_name


def strip_strings(tflite: bytes) -> bytes:
    """Drop what a microcontroller never reads: tensor and subgraph names,
    signature defs, the description and metadata entries (TF's
    ``flatbuffer_utils.strip_strings`` plus metadata). Ops, tensors,
    shapes, quantization and weights are unchanged."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    flatbuffer_utils.strip_strings(model)
    model.metadata = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
