"""Check a .tflite flatbuffer's structure before any interpreter sees it.

The flatbuffers ``Verifier`` is C++ only; this is its job for the TFLite
schema in pure Python (no TensorFlow import): every offset, vector and string
lies inside the bytes, every buffer, tensor, opcode and subgraph index is in
range, shapes are non-negative, constant buffers hold what their shape
declares, and no tensor declares more than ``max_tensor_bytes``. A file that
passes can still be refused by an interpreter (wrong op semantics), which is
why interpreters run in a child process (:mod:`converters.sandbox`); a file
that fails never reaches one.

Example:
    >>> verify(open("model.tflite", "rb").read(), name="model.tflite")
    >>> verify(b"junk", name="junk.tflite")
    Traceback (most recent call last):
    InvalidModelError: junk.tflite: not a TFLite flatbuffer (...)
"""

from __future__ import annotations

import math
import mmap
import struct

from converters.tflite.flatbuffer import InvalidModelError

__all__ = ["MAX_TENSOR_BYTES", "verify"]

#: largest tensor (and total of runtime tensors) a model may declare
MAX_TENSOR_BYTES = 1 << 30

#: TensorType value -> (name, bytes per element; None: not fixed-size)
_TYPES = {
    0: ("FLOAT32", 4), 1: ("FLOAT16", 2), 2: ("INT32", 4), 3: ("UINT8", 1),
    4: ("INT64", 8), 5: ("STRING", None), 6: ("BOOL", 1), 7: ("INT16", 2),
    8: ("COMPLEX64", 8), 9: ("INT8", 1), 10: ("FLOAT64", 8),
    11: ("COMPLEX128", 16), 12: ("UINT64", 8), 13: ("RESOURCE", None),
    14: ("VARIANT", None), 15: ("UINT32", 4), 16: ("UINT16", 2),
    17: ("INT4", None), 18: ("BFLOAT16", 2), 19: ("INT2", None),
    20: ("UINT4", None),
}
_ZERO_POINT_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255),
                     "INT16": (-32768, 32767), "INT4": (-8, 7),
                     "INT32": (-(1 << 31), (1 << 31) - 1)}
_INDEX_SIZES = {1: 4, 2: 2, 3: 1}  # SparseIndexVector type -> element bytes


class _Bad(Exception):
    """A structural problem; becomes one InvalidModelError line."""


class _Table:
    """A flatbuffer table at ``pos`` whose vtable was checked in bounds."""

    def __init__(self, buf: "_Buffer", pos: int, what: str):
        self.buf, self.pos, self.what = buf, pos, what
        buf.need(pos, 4, what)
        vtable = pos - buf.i32(pos)
        buf.need(vtable, 4, f"{what} vtable")
        self.vsize, tsize = buf.u16(vtable), buf.u16(vtable + 2)
        if self.vsize < 4 or self.vsize % 2:
            raise _Bad(f"{what} has a malformed vtable (size {self.vsize})")
        buf.need(vtable, self.vsize, f"{what} vtable")
        buf.need(pos, max(tsize, 4), what)
        self.vtable, self.tsize = vtable, tsize
        for slot in range(4, self.vsize, 2):  # every field inside the table
            off = buf.u16(vtable + slot)
            if off and (off < 4 or off >= tsize):
                raise _Bad(f"{what} field {(slot - 4) // 2} lies outside the "
                           f"table (offset {off}, table size {tsize})")

    def field(self, index: int) -> int | None:
        """Absolute position of field ``index``, or None when absent."""
        slot = 4 + 2 * index
        if slot >= self.vsize:
            return None
        off = self.buf.u16(self.vtable + slot)
        if not off:
            return None
        if off + 1 > self.tsize:
            raise _Bad(f"{self.what} field {index} lies outside the table")
        return self.pos + off

    def scalar(self, index: int, fmt: str, default=0):
        pos = self.field(index)
        if pos is None:
            return default
        size = struct.calcsize(fmt)
        self.buf.need(pos, size, f"{self.what} field {index}")
        return struct.unpack_from("<" + fmt, self.buf.data, pos)[0]

    def _target(self, index: int) -> int | None:
        pos = self.field(index)
        if pos is None:
            return None
        self.buf.need(pos, 4, f"{self.what} field {index}")
        return pos + self.buf.u32(pos)

    def table(self, index: int, what: str) -> "_Table | None":
        pos = self._target(index)
        return None if pos is None else _Table(self.buf, pos, what)

    def vector(self, index: int, item: int, what: str) -> tuple[int, int]:
        """``(start, length)`` of a vector of ``item``-byte elements."""
        pos = self._target(index)
        if pos is None:
            return 0, 0
        self.buf.need(pos, 4, what)
        n = self.buf.u32(pos)
        if n * item > self.buf.size - pos - 4:
            raise _Bad(f"{what} declares {n} elements, more than the "
                       f"{self.buf.size}-byte file can hold")
        return pos + 4, n

    def ints(self, index: int, what: str, fmt: str = "i") -> list[int]:
        start, n = self.vector(index, struct.calcsize(fmt), what)
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf.data, start))

    def tables(self, index: int, what: str) -> list["_Table"]:
        start, n = self.vector(index, 4, what)
        return [_Table(self.buf, start + 4 * k + self.buf.u32(start + 4 * k),
                       f"{what}[{k}]") for k in range(n)]

    def string(self, index: int, what: str) -> str:
        start, n = self.vector(index, 1, what)
        if not start:
            return ""
        self.buf.need(start, n + 1, what)
        if self.buf.data[start + n] != 0:
            raise _Bad(f"{what} is not NUL-terminated")
        return self.buf.data[start:start + n].decode("utf-8", "replace")


class _Buffer:
    def __init__(self, data: bytes):
        self.data, self.size = data, len(data)

    def need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise _Bad(f"{what} points outside the file (bytes {pos}..{pos + n}"
                       f" of {self.size})")

    def u16(self, pos: int) -> int:
        self.need(pos, 2, "offset")
        return struct.unpack_from("<H", self.data, pos)[0]

    def u32(self, pos: int) -> int:
        self.need(pos, 4, "offset")
        return struct.unpack_from("<I", self.data, pos)[0]

    def i32(self, pos: int) -> int:
        self.need(pos, 4, "offset")
        return struct.unpack_from("<i", self.data, pos)[0]


def verify(data: bytes, *, name: str = "model",
           max_tensor_bytes: int = MAX_TENSOR_BYTES) -> None:
    """Raise if ``data`` is not a structurally sound TFLite flatbuffer.

    Args:
        data: the file's bytes.
        name: what to call the model in the error (the file path).
        max_tensor_bytes: the largest size a single tensor, and all runtime
            (non-constant) tensors of a subgraph together, may declare.

    Raises:
        converters.flatbuffer.InvalidModelError: one line naming the file and
            the first problem found.

    Example:
        >>> verify(tflite_bytes, name="build/digits/model.tflite")
    """
    if not isinstance(data, (bytes, bytearray, memoryview, mmap.mmap)):
        data = bytes(data)   # buffers (a memory-mapped file) are read as is
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InvalidModelError(
            f"{name}: not a TFLite flatbuffer (missing 'TFL3' file "
            f"identifier, {len(data)} bytes); pass a .tflite file")
    try:
        _verify_model(_Buffer(data), max_tensor_bytes)
    except _Bad as exc:
        raise InvalidModelError(
            f"{name}: corrupt TFLite flatbuffer: {exc}; re-convert or "
            "re-download the model") from None


def _verify_model(buf: _Buffer, limit: int) -> None:
    model = _Table(buf, buf.u32(0), "model")
    codes = model.tables(1, "operator_codes")
    for k, code in enumerate(codes):
        code.string(1, f"operator_codes[{k}].custom_code")
    buffers = model.tables(4, "buffers")
    sizes = [_buffer_bytes(buf, b, k) for k, b in enumerate(buffers)]
    graphs = model.tables(2, "subgraphs")
    if not graphs:
        raise _Bad("the model has no subgraph")
    tensor_counts = [_verify_subgraph(g, s, len(codes), sizes, limit)
                     for s, g in enumerate(graphs)]
    model.string(3, "description")
    for k in model.ints(5, "metadata_buffer"):
        _in_range(k, len(buffers), "metadata_buffer entry", "buffers")
    for k, meta in enumerate(model.tables(6, "metadata")):
        meta.string(0, f"metadata[{k}].name")
        _in_range(meta.scalar(1, "I"), len(buffers), f"metadata[{k}].buffer",
                  "buffers")
    for k, sig in enumerate(model.tables(7, "signature_defs")):
        where = f"signature_defs[{k}]"
        sig.string(2, f"{where}.signature_key")
        graph = sig.scalar(4, "I")
        _in_range(graph, len(graphs), f"{where}.subgraph_index", "subgraphs")
        for part in (0, 1):
            for j, tmap in enumerate(sig.tables(part, f"{where} tensors")):
                tmap.string(0, f"{where} tensor {j} name")
                _in_range(tmap.scalar(1, "I"), tensor_counts[graph],
                          f"{where} tensor {j}", "tensors")
    for index in (8, 9):  # external buffer groups / buffers: tables
        for k, table in enumerate(model.tables(index, "external buffers")):
            table.string(0 if index == 8 else 4, f"external buffer {k} name")


def _buffer_bytes(buf: _Buffer, table: _Table, k: int) -> int:
    _, n = table.vector(0, 1, f"buffers[{k}].data")
    offset, size = table.scalar(1, "Q"), table.scalar(2, "Q")
    if offset > 1:  # data stored after the flatbuffer (models > 2 GB)
        if offset + size > buf.size:
            raise _Bad(f"buffers[{k}] points to bytes {offset}..{offset + size}"
                       f" beyond the {buf.size}-byte file")
        return size
    return n


def _in_range(index: int, count: int, what: str, of: str,
              optional: bool = False) -> None:
    if optional and index == -1:
        return
    if not 0 <= index < count:
        raise _Bad(f"{what} refers to {of[:-1]} {index} but the model has "
                   f"{count} {of}")


def _verify_subgraph(graph: _Table, s: int, n_codes: int, sizes: list[int],
                     limit: int) -> int:
    where = f"subgraph {s}"
    tensors = graph.tables(0, f"{where} tensors")
    runtime = 0
    for t, tensor in enumerate(tensors):
        runtime += _verify_tensor(tensor, f"{where} tensor {t}", sizes, limit)
    if runtime > limit:
        raise _Bad(f"{where} declares {runtime} bytes of runtime tensors, "
                   f"more than the {limit}-byte limit")
    n = len(tensors)
    for part, label in ((1, "input"), (2, "output")):
        for idx in graph.ints(part, f"{where} {label}s"):
            _in_range(idx, n, f"{where} {label}", "tensors")
    for o, op in enumerate(graph.tables(3, f"{where} operators")):
        at = f"{where} operator {o}"
        _in_range(op.scalar(0, "I"), n_codes, f"{at} opcode", "operator_codes")
        for part, label in ((1, "input"), (2, "output"), (8, "intermediate")):
            for idx in op.ints(part, f"{at} {label}s"):
                _in_range(idx, n, f"{at} {label}", "tensors", optional=True)
        for field in (4, 12):  # builtin_options, builtin_options_2 (unions)
            if op.scalar(field - 1, "B"):
                op.table(field, f"{at} options")
        op.vector(5, 1, f"{at} custom_options")
        op.vector(7, 1, f"{at} mutating_variable_inputs")
    graph.string(4, f"{where} name")
    return n


def _verify_tensor(tensor: _Table, where: str, sizes: list[int],
                   limit: int) -> int:
    """Check one tensor; returns its bytes when it is a runtime tensor."""
    name = tensor.string(3, f"{where} name")
    label = f"{where} {name!r}" if name else where
    code = tensor.scalar(1, "b")
    if code not in _TYPES:
        raise _Bad(f"{label} has unknown type {code}")
    dtype, item = _TYPES[code]
    shape = tensor.ints(0, f"{label} shape")
    if any(d < 0 for d in shape):
        raise _Bad(f"{label} has a negative dimension in shape {shape}")
    if any(d < -1 for d in tensor.ints(7, f"{label} shape_signature")):
        raise _Bad(f"{label} has a dimension below -1 in its shape signature")
    count = 1
    for d in shape:
        count *= d
    nbytes = count * (item or 1)
    if nbytes > limit:
        raise _Bad(f"{label} declares shape {shape} ({nbytes} bytes of "
                   f"{dtype}), more than the {limit}-byte limit")
    index = tensor.scalar(2, "I")
    _in_range(index, len(sizes), f"{label} buffer", "buffers")
    sparse = tensor.table(6, f"{label} sparsity")
    if sparse is not None:
        _verify_sparsity(sparse, label)
    _verify_quantization(tensor.table(4, f"{label} quantization"), label,
                         shape, dtype)
    for k, variant in enumerate(tensor.tables(9, f"{label} variant_tensors")):
        variant.ints(1, f"{label} variant {k} shape")
    stored = sizes[index]
    if stored and item and sparse is None and stored != nbytes:
        raise _Bad(f"{label} declares shape {shape} ({nbytes} bytes of "
                   f"{dtype}) but buffer {index} holds {stored} bytes")
    return 0 if stored else nbytes


def _verify_quantization(q: _Table | None, label: str, shape: list,
                         dtype: str) -> None:
    if q is None:
        return
    scale = q.ints(2, f"{label} scales", "f")
    zero = q.ints(3, f"{label} zero points", "q")
    if not all(math.isfinite(s) for s in scale):
        raise _Bad(f"{label} has a NaN or infinite quantization scale")
    lo, hi = _ZERO_POINT_RANGE.get(dtype, (-(1 << 63), (1 << 63) - 1))
    bad = [z for z in zero if not lo <= z <= hi]
    if bad:
        raise _Bad(f"{label} ({dtype}) has zero point {bad[0]} outside "
                   f"[{lo}, {hi}]")
    q.ints(0, f"{label} min", "f")
    q.ints(1, f"{label} max", "f")
    if q.scalar(4, "B"):
        q.table(5, f"{label} quantization details")
    if len(scale) > 1:
        axis = q.scalar(6, "i")  # channel counts may differ: TFLM LUT
        if not 0 <= axis < max(len(shape), 1):  # tensors keep their scales
            raise _Bad(f"{label} has {len(scale)} per-channel scales but "
                       f"quantized dimension {axis} of shape {shape}")
        if len(zero) not in (0, 1, len(scale)):
            raise _Bad(f"{label} has {len(scale)} scales but {len(zero)} "
                       "zero points")


def _verify_sparsity(sparse: _Table, label: str) -> None:
    sparse.ints(0, f"{label} traversal_order")
    sparse.ints(1, f"{label} block_map")
    for k, dim in enumerate(sparse.tables(2, f"{label} dim_metadata")):
        for type_field, value_field in ((2, 3), (4, 5)):
            kind = dim.scalar(type_field, "B")
            if kind:
                if kind not in _INDEX_SIZES:
                    raise _Bad(f"{label} dim_metadata[{k}] has unknown index "
                               f"vector type {kind}")
                values = dim.table(value_field, f"{label} dim_metadata[{k}]")
                if values is not None:
                    values.vector(0, _INDEX_SIZES[kind],
                                  f"{label} dim_metadata[{k}] values")
