"""The TFLM ``DECODE`` op: encoded constant tensors and their insertion.

TFLM stores a constant tensor encoded when a custom ``TFLM_DECODE`` op (the
resolver's ``AddDecode()``) expands it into the arena just before the op that
reads it. Each encoded tensor becomes a ``uint8`` buffer plus an *ancillary*
tensor that starts with the 16-byte DECODE Common Metadata (DCM): byte 0 is
the decode type (0 LUT, 1 Huffman, 2 prune), byte 1 the DCM version (1),
bytes 4-15 belong to the decode type, and its data follows from byte 16
(tflite-micro ``kernels/decode_state*.cc``). The DECODE kernel requires both
inputs to be constant, so encodings do not chain (no LUT of a pruned tensor):
each tensor gets exactly one.

:func:`constants` lists the tensors an encoder may take, :func:`apply`
inserts the DECODE ops (``tflite_micro``'s ``decode_insert``: one DECODE
before each consumer, its output living only until that consumer has run)
and re-serializes with the 16-byte buffer alignment the kernels read with.

Example:
    >>> from converters.encodings import decode, huffman
    >>> c = decode.constants(tflite)[0]
    >>> small = decode.apply(tflite, {c.index: huffman.encode(c.array)})
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from converters.targets.micro import MicroError

__all__ = ["DCM_BYTES", "Constant", "DecodeType", "Encoded", "EncodingError",
           "Quant", "apply", "constants", "dcm"]

DCM_BYTES = 16
DECODE_OP = "TFLM_DECODE"

#: tensor types the DECODE kernels write (decode_state_*.cc)
_DTYPES = {"INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
           "INT64": np.int64, "FLOAT32": np.float32, "BOOL": np.bool_}


class DecodeType(enum.IntEnum):
    """DCM byte 0."""

    LUT = 0
    HUFFMAN = 1
    PRUNE = 2


class EncodingError(MicroError):
    """A tensor cannot be encoded as asked, or the encoded model is wrong."""


def dcm(kind: DecodeType, user: bytes = b"") -> bytes:
    """The 16-byte DCM header: type, version 1, then up to 12 user bytes."""
    if len(user) > DCM_BYTES - 4:
        raise ValueError(f"DCM user data is 12 bytes at most. Got: {len(user)}")
    return bytes([int(kind), 1, 0, 0]) + bytes(user).ljust(DCM_BYTES - 4,
                                                           b"\0")


@dataclasses.dataclass(frozen=True)
class Quant:
    """What the decoders read of a tensor's quantization."""

    zero_points: tuple[int, ...]
    axis: int
    channels: int

    def per_element(self, shape: tuple[int, ...]) -> np.ndarray:
        """The zero point of each element, flattened in C order."""
        n = int(np.prod(shape)) if shape else 1
        zps = np.asarray(self.zero_points or (0,), np.int64)
        if len(zps) == 1:
            return np.full(n, zps[0], np.int64)
        channel = np.indices(shape)[self.axis].ravel()
        return zps[channel]


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One tensor in a DECODE layout.

    Attributes:
        method: ``"lut"``, ``"prune"`` or ``"huffman"``.
        data: the encoded tensor's new (``uint8``) buffer.
        ancillary: DCM header plus the decode type's tables.
        detail: method specifics for the report (bits, symbols, ...).
    """

    method: str
    data: bytes
    ancillary: bytes
    detail: dict = dataclasses.field(default_factory=dict)

    @property
    def stored_bytes(self) -> int:
        """Bytes in flash: encoded data plus ancillary tensor."""
        return len(self.data) + len(self.ancillary)


@dataclasses.dataclass(frozen=True)
class Constant:
    """A constant tensor of subgraph 0 that ops read."""

    index: int
    dtype: str
    shape: tuple[int, ...]
    array: np.ndarray
    quant: Quant | None
    consumers: tuple[int, ...]
    refusal: str | None = None     # why no encoding may take it

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def _editor():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor
    return model_editor


def _read(tflite: bytes):
    try:
        return _editor().read(bytes(tflite))
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises anything
        raise EncodingError(f"not a readable .tflite flatbuffer ({exc})") \
            from None


def _type_name(code: int) -> str:
    from tflite_micro.tensorflow.lite.micro.compression import tensor_type
    return tensor_type.name(code)


def _quant(t) -> Quant | None:
    q = t.quantization
    if q is None:
        return None
    zps = q.zero_points if isinstance(q.zero_points, (list, tuple)) else \
        [q.zero_points]
    scales = q.scales if isinstance(q.scales, (list, tuple)) else [q.scales]
    return Quant(tuple(int(z) for z in zps), int(q.axis or 0), len(scales))


def constants(tflite: bytes) -> list[Constant]:
    """The constant tensors of subgraph 0 that operators read, in index order.

    ``refusal`` is set where the DECODE op cannot stand in for the tensor: a
    scalar, a type no decoder writes, an input TFLM kernels require to be
    constant at Prepare (e.g. a PAD's paddings), or a buffer shared with
    another tensor.
    """
    from tflite_micro.tensorflow.lite.micro.compression import constant_inputs
    model = _read(tflite)
    sg = model.subgraphs[0]
    owners: dict[int, int] = {}
    for t in sg.tensors:
        if t.buffer is not None and t.buffer.data:
            owners[id(t.buffer)] = owners.get(id(t.buffer), 0) + 1
    position = {id(op): k for k, op in enumerate(sg.operators)}
    out = []
    for k, t in enumerate(sg.tensors):
        consumers = tuple(position[id(op)] for op in sg.consumers_of(t))
        if t.buffer is None or not t.buffer.data or not consumers:
            continue
        dtype = _type_name(t.dtype)
        array = np.frombuffer(t.buffer.data, _DTYPES.get(dtype, np.uint8))
        if dtype in _DTYPES:
            array = array.reshape(tuple(int(s) for s in t.shape))
        refusal = None
        if dtype not in _DTYPES:
            refusal = f"{dtype} tensors have no decoder"
        elif array.size <= 1:
            refusal = "scalar (DECODE needs rank >= 1 and > 1 element)"
        elif owners[id(t.buffer)] > 1:
            refusal = "buffer shared with another tensor"
        elif any(t is o for o in sg.outputs):
            refusal = "a model output"
        else:
            uses = constant_inputs.find_uses(sg, t)
            if uses:
                refusal = "must stay constant: " + uses[0].describe()
        out.append(Constant(k, dtype, tuple(int(s) for s in t.shape), array,
                            _quant(t), consumers, refusal))
    return out


def _share_zero_points(model) -> int:
    """Store one zero point where a per-channel tensor's are all equal.

    TFLM's allocator broadcasts a one-entry ``zero_point`` vector to every
    channel (``micro_allocator.cc``), so the other int64 entries are flash
    that the microcontroller never needs. Returns the bytes removed.
    """
    saved = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            zps = None if q is None or q.zeroPoint is None else \
                np.asarray(q.zeroPoint)
            if zps is not None and zps.size > 1 and np.all(zps == zps[0]):
                saved += 8 * (zps.size - 1)
                q.zeroPoint = [int(zps[0])]
    return saved


def _compact_buffers(model) -> None:
    """Point data-less tensors at the empty buffer 0 and drop buffers no
    tensor or metadata entry references (e.g. those of stripped metadata),
    as ``tflite_micro``'s ``model_editor`` does on every build."""
    def empty(b) -> bool:
        return b.data is None or len(b.data) == 0 and not b.offset
    used = {0}
    for sg in model.subgraphs:
        for t in sg.tensors:
            if empty(model.buffers[t.buffer]):
                t.buffer = 0
            used.add(t.buffer)
    used |= {m.buffer for m in model.metadata or []}
    keep = sorted(used)
    new_index = {old: k for k, old in enumerate(keep)}
    model.buffers = [model.buffers[k] for k in keep]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = new_index[t.buffer]
    for m in model.metadata or []:
        m.buffer = new_index[m.buffer]


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import (
        schema_py_generated as schema)
    return schema


def _decode_opcode(model) -> int:
    schema = _schema()
    custom = schema.BuiltinOperator.CUSTOM
    for k, oc in enumerate(model.operatorCodes or []):
        name = oc.customCode.decode() if isinstance(oc.customCode, bytes) \
            else oc.customCode
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == custom and \
                name == DECODE_OP:
            return k
    oc = schema.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = custom
    oc.customCode, oc.version = DECODE_OP, 1
    model.operatorCodes = list(model.operatorCodes or []) + [oc]
    return len(model.operatorCodes) - 1


def _add_tensor(model, sg, tensor, data: bytes | None) -> int:
    if data is not None:
        buf = _schema().BufferT()
        buf.data = np.frombuffer(data, np.uint8)
        model.buffers.append(buf)
        tensor.buffer = len(model.buffers) - 1
    sg.tensors.append(tensor)
    return len(sg.tensors) - 1


def _insert(model, encodings: Mapping[int, Encoded]) -> None:
    """One DECODE before each consumer, decoding every encoded tensor it
    reads into a fresh tensor that lives only until the consumer has run
    (as ``tflite_micro``'s ``decode_insert`` does)."""
    schema = _schema()
    sg = model.subgraphs[0]
    opcode = _decode_opcode(model)
    ancillary = {}
    for index, enc in encodings.items():
        t = schema.TensorT()
        t.shape, t.type = [len(enc.ancillary)], schema.TensorType.UINT8
        ancillary[index] = _add_tensor(model, sg, t, enc.ancillary)
    ops = sg.operators
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        op.inputs = [int(i) for i in op.inputs]
        reads = [i for i in dict.fromkeys(op.inputs) if i in encodings]
        if not reads:
            continue
        decode_op = schema.OperatorT()
        decode_op.opcodeIndex, decode_op.inputs, decode_op.outputs = \
            opcode, [], []
        for index in reads:
            out = copy.deepcopy(sg.tensors[index])
            out.buffer = 0
            if out.name:
                name = out.name.decode() if isinstance(out.name, bytes) \
                    else out.name
                out.name = f"{name}_decoded"
            decoded = _add_tensor(model, sg, out, None)
            decode_op.inputs += [index, ancillary[index]]
            decode_op.outputs.append(decoded)
            op.inputs = [decoded if i == index else i for i in op.inputs]
        ops.insert(k, decode_op)
    for index, enc in encodings.items():
        t = sg.tensors[index]
        t.shape, t.shapeSignature = [len(enc.data)], None
        t.type, t.quantization = schema.TensorType.UINT8, None
        model.buffers[t.buffer].data = np.frombuffer(enc.data, np.uint8)


def _align(model_bytes: bytes) -> bytes:
    """Re-serialize with the schema's ``force_align`` (16-byte buffers),
    which the Python flatbuffers builder ignores; Huffman reads 32-bit
    words and LUT/PRUNE typed tables straight from the buffers."""
    from tflite_micro.tensorflow.lite.micro.tools import (
        tflite_flatbuffer_align_wrapper as align)
    with tempfile.TemporaryDirectory(prefix="tfc-decode-") as tmp:
        src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        with open(src, "wb") as f:
            f.write(model_bytes)
        align.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()


def apply(tflite: bytes, encodings: Mapping[int, Encoded], *,
          share_zero_points: bool = True) -> bytes:
    """The model with each ``{tensor index: Encoded}`` behind a DECODE op.

    Args:
        tflite: the plain model (tensor indices refer to subgraph 0).
        encodings: the tensors to replace; may be empty.
        share_zero_points: store a single zero point for per-channel tensors
            whose zero points are all equal (TFLM broadcasts it).

    Buffers nothing references are dropped and tensors without data share
    the empty buffer 0, so ``apply(tflite, {})`` may already be smaller.

    Raises:
        EncodingError: an index is not an encodable constant tensor.
    """
    import flatbuffers
    allowed = {c.index: c for c in constants(tflite)} if encodings else {}
    for index in encodings:
        c = allowed.get(int(index))
        if c is None or c.refusal:
            why = c.refusal if c else "not a constant tensor that ops read"
            raise EncodingError(f"tensor {index} cannot be encoded: {why}")
    model = _schema().ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    _insert(model, {int(i): e for i, e in encodings.items()})
    if share_zero_points:
        _share_zero_points(model)
    _compact_buffers(model)
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return _align(bytes(builder.Output()))
