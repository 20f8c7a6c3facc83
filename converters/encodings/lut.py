"""TFLM look-up-table (LUT) compression of clustered weights.

A clustered layer has few distinct weight values (16 clusters -> at most 16
int8 values per channel after per-channel quantization). TFLM can store such
a tensor as ``bits``-wide indices plus a small value table, and a
``TFLM_DECODE`` op (registered with ``AddDecode()``) expands it into the arena
just before its consumer runs. Flash shrinks (4-bit indices: about half of an
int8 tensor); RAM grows by the decoded tensor while it is live.

:func:`compress_clustered` picks the tensors, writes the compression spec for
``tflite_micro.compression`` and, by default, proves the result runs in the
TFLM interpreter (the pinned ``tflite-micro`` wheel has the DECODE kernel).

Example:
    >>> small, stats = compress_clustered(tflite, max_bits=4)
    >>> stats["bytes_before"], stats["bytes_after"], stats["bits"]
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from converters.tflite import flatbuffer
from converters.targets import micro
from converters.runtimes import tflm
from converters.tflite.flatbuffer import ModelInfo, Tensor
from converters.encodings.decode import Encoded, EncodingError, Quant

__all__ = ["LutError", "compress_clustered", "encode", "plan"]

_DCM_BYTES = 16          # decode common metadata header per compressed tensor
_MAX_BITS = 7            # widest LUT index the DCM can express

SKIP_TYPE = "not a constant int8 tensor"
SKIP_SCALAR = "scalar (TFLM compression needs rank >= 1)"
SKIP_UNIQUE = "too many unique values"
SKIP_SAVING = "saving below min_saving"
SKIP_REFUSED = "refused by tflite_micro.compression"


class LutError(micro.MicroError):
    """LUT compression failed or the compressed model does not run in TFLM."""


def _bits(unique: int) -> int:
    return max(1, (int(unique) - 1).bit_length())


def _layer(info: ModelInfo, index: int) -> str:
    for op in info.operators:
        if index in op.inputs:
            return micro.layer_of(info, op)
    return "?"


def _candidate(t: Tensor, max_bits: int) -> tuple[dict | None, str]:
    """The LUT layout for one tensor, or a skip reason.

    The layout follows the tensor's quantization: one value table per
    channel along ``quantized_dimension`` for per-channel quantized tensors,
    one table otherwise. The pinned TFLM DECODE kernel silently returns wrong
    values when the two disagree (checked: per-tensor tables on a
    per-channel quantized kernel, and per-channel tables on a per-tensor
    quantized one, both change the model's outputs).
    """
    a = t.data
    if len(t.scale) > 1:
        axis = int(t.quantized_dimension)
        if axis not in (0, a.ndim - 1):
            return None, (f"per-channel axis {axis} unsupported by TFLM "
                          f"compression (first or last axis only)")
        moved = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
        unique = max(int(np.unique(row).size) for row in moved)
        layout = {"mode": "per-channel", "axis": axis, "unique": unique,
                  "tables": a.shape[axis]}
    else:
        unique = int(np.unique(a).size)
        layout = {"mode": "per-tensor", "axis": None, "unique": unique,
                  "tables": 1}
    bits = _bits(unique)
    if bits > max_bits:
        where = "per channel" if layout["axis"] is not None else "per tensor"
        return None, (f"{SKIP_UNIQUE} ({unique} {where} > {2 ** max_bits} "
                      f"for max_bits={max_bits})")
    layout["bits"] = bits
    layout["bytes_after"] = (-(-a.size * bits // 8) + _DCM_BYTES
                             + layout["tables"] * unique * a.itemsize)
    return layout, ""


def plan(info: ModelInfo, *, max_bits: int = 4,
         min_saving: int = 64) -> tuple[list[dict], list[dict]]:
    """Which constant int8 tensors to LUT-compress, and how.

    A tensor qualifies when its unique values (per channel along its
    quantized dimension for per-channel quantized tensors, which must be the
    first or last axis; else per tensor) fit in ``2**bits`` entries for
    ``bits <= max_bits``, and the estimated
    saving (indices + 16-byte header + value tables vs. int8 data) is at
    least ``min_saving`` bytes. The index width is
    ``ceil(log2(unique))`` (at least 1).

    Returns:
        ``(chosen, skipped)``: dicts with ``index``, ``name``, ``layer``,
        ``shape``, ``mode``, ``axis``, ``unique``, ``bits``, ``bytes_before``,
        ``bytes_after`` (estimate); skipped ones carry a ``reason``.
    """
    if not 1 <= int(max_bits) <= _MAX_BITS:
        raise ValueError(f"max_bits must be in 1..{_MAX_BITS}. Got: {max_bits}")
    consumed = {i for op in info.operators for i in op.inputs}
    chosen, skipped = [], []
    for t in info.tensors:
        if not t.is_constant or t.index not in consumed:
            continue
        row = {"index": t.index, "name": t.name,
               "layer": _layer(info, t.index), "shape": list(t.shape)}
        if t.dtype != "INT8":
            continue  # biases (int32), shapes, ...: not clustered weights
        if t.data.ndim == 0 or t.data.size <= 1:
            skipped.append({**row, "reason": SKIP_SCALAR})
            continue
        best, reason = _candidate(t, int(max_bits))
        if best is None:
            skipped.append({**row, "reason": reason})
            continue
        best = {**row, **{k: v for k, v in best.items() if k != "tables"},
                "bytes_before": int(t.data.nbytes)}
        if best["bytes_before"] - best["bytes_after"] < min_saving:
            skipped.append({**best, "reason": SKIP_SAVING})
            continue
        chosen.append(best)
    return chosen, skipped


def _specs(chosen: list[dict]):
    from tflite_micro.tensorflow.lite.micro.compression import spec
    return [spec.Tensor(subgraph=0, tensor=c["index"], compression=[
        spec.LookUpTableCompression(
            index_bitwidth=c["bits"],
            mode=spec.PerTensor() if c["axis"] is None
            else spec.PerChannel(axis=c["axis"]))]) for c in chosen]


def _refusals() -> tuple:
    from tflite_micro.tensorflow.lite.micro.compression import compressor
    return (compressor.CompressionError, ValueError)


def _compress(tflite: bytes, chosen: list[dict]) -> bytes:
    from tflite_micro import compression
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return bytes(compression.compress(tflite, _specs(chosen)))


def compress_clustered(tflite: bytes, info: ModelInfo | None = None,
                       max_bits: int = 4, *, min_saving: int = 64,
                       verify: bool = True) -> tuple[bytes | None, dict]:
    """LUT-compress the clustered int8 weight tensors of a TFLM model.

    Args:
        tflite: a full-integer model.
        info: its parsed form, when the caller has it.
        max_bits: widest index to use (1..7); 4 fits 16 clusters.
        min_saving: skip tensors whose estimated saving is smaller (DECODE
            ops and extra tensors cost flatbuffer bytes too).
        verify: run the compressed model in TFLM (child process), measure
            the minimum arena before and after, and raise if it does not run.

    Returns:
        ``(compressed bytes or None, stats)``; ``None`` when no tensor
        qualifies or the file would not shrink (``stats["reason"]`` says
        so). ``stats`` holds ``bytes_before``, ``bytes_after``,
        ``saved_bytes`` (whole file; re-serialization adds about 1.5 KB of
        flatbuffer padding and DECODE bookkeeping), ``weight_bytes_before``
        and ``weight_bytes_after`` (constant buffers only),
        ``tensors_compressed``, ``bits`` (name -> index
        width), ``tensors`` and ``skipped`` (see :func:`plan`), and with
        ``verify`` also ``arena_before`` and ``arena_after`` (bytes; the
        decoded weights live in the arena, so it grows).

    Raises:
        LutError: compression failed, or the compressed model does not run in
            the TFLM interpreter.

    Example:
        >>> small, stats = compress_clustered(tflite)
        >>> stats["tensors_compressed"], stats["saved_bytes"]
    """
    tflite = bytes(tflite)
    info = info or flatbuffer.read(tflite)
    chosen, skipped = plan(info, max_bits=max_bits, min_saving=min_saving)
    stats: dict[str, object] = {
        "bytes_before": len(tflite), "bytes_after": len(tflite),
        "saved_bytes": 0, "tensors_compressed": 0, "bits": {},
        "tensors": chosen, "skipped": skipped, "max_bits": int(max_bits)}
    if not chosen:
        return None, stats
    refused = _refusals()
    try:
        out = _compress(tflite, chosen)
    except refused:  # find the culprit(s), keep the rest
        ok = []
        for c in chosen:
            try:
                _compress(tflite, [c])
                ok.append(c)
            except refused as exc:
                skipped.append({**c, "reason": f"{SKIP_REFUSED}: "
                                f"{str(exc).splitlines()[0]}"})
        chosen[:] = ok
        if not chosen:
            return None, stats
        out = _compress(tflite, chosen)
    if len(out) >= len(tflite):
        stats["reason"] = (f"the compressed file ({len(out)} bytes) is not "
                           f"smaller than the original ({len(tflite)} bytes): "
                           f"too little clustered weight data")
        return None, stats
    stats.update({"bytes_after": len(out), "saved_bytes": len(tflite) - len(out),
                  "weight_bytes_before": info.weight_bytes,
                  "weight_bytes_after": flatbuffer.read(out).weight_bytes,
                  "tensors_compressed": len(chosen),
                  "bits": {(c["name"] or f"tensor {c['index']}"): c["bits"] for c in chosen}})
    if verify:
        stats["arena_before"] = tflm.find_arena(tflite)
        try:
            stats["arena_after"] = tflm.find_arena(out)
        except micro.MicroError as exc:
            raise not_runnable(exc) from None
    return out, stats


def not_runnable(exc: Exception) -> LutError:
    """The error for a LUT-compressed model TFLM cannot run."""
    return LutError(
        f"the LUT-compressed model does not run in TFLM ({exc}); this "
        f"tflite-micro build may lack the DECODE kernel: use the "
        f"uncompressed model")


def encode(array: np.ndarray, quant: Quant | None = None,
           max_bits: int = _MAX_BITS) -> Encoded:
    """LUT-encode one constant tensor with ``tflite_micro``'s own LUT plugin.

    One value table per channel when ``quant`` is per-channel (the kernel
    picks per-channel decoding from the decoded tensor's quantization, so the
    tables must follow it), else one table; indices ``ceil(log2(unique))``
    bits wide.

    Raises:
        EncodingError: more than ``2**max_bits`` values per table, or a
            channel axis other than the first or last.
    """
    from tflite_micro.tensorflow.lite.micro.compression import (
        compressor, model_editor, spec)
    from tflite_micro.tensorflow.lite.micro.compression import lut as tflm_lut
    from tflite_micro.tensorflow.lite.micro.python import (
        schema_py_generated as schema)
    array = np.asarray(array)
    types = {np.dtype(np.int8): schema.TensorType.INT8,
             np.dtype(np.int16): schema.TensorType.INT16,
             np.dtype(np.int32): schema.TensorType.INT32,
             np.dtype(np.int64): schema.TensorType.INT64,
             np.dtype(np.float32): schema.TensorType.FLOAT32}
    if array.dtype not in types or array.size < 2:
        raise EncodingError(f"LUT: no encoding for a {array.dtype} tensor of "
                            f"{array.size} element(s)")
    axis = quant.axis if quant is not None and quant.channels > 1 else None
    if axis is not None and axis not in (0, array.ndim - 1):
        raise EncodingError(f"LUT: per-channel axis {axis} of a rank-"
                            f"{array.ndim} tensor (first or last axis only)")
    rows = [array] if axis is None else list(np.moveaxis(array, axis, 0))
    unique = max(int(np.unique(r).size) for r in rows)
    bits = _bits(unique)
    if bits > max_bits:
        where = "per channel" if axis is not None else "per tensor"
        raise EncodingError(f"LUT: {unique} values {where} need {bits}-bit "
                            f"indices (> {max_bits})")
    tensor = model_editor.Tensor(shape=array.shape, dtype=types[array.dtype],
                                 data=array.tobytes())
    mode = spec.PerTensor() if axis is None else spec.PerChannel(axis=axis)
    try:
        result = tflm_lut.LutCompressor().compress(
            tensor, spec.LookUpTableCompression(index_bitwidth=bits,
                                                mode=mode))
    except compressor.CompressionError as exc:
        raise EncodingError(f"LUT: {exc}") from None
    return Encoded("lut", bytes(result.encoded_data),
                   bytes(result.ancillary_data),
                   {"bits": bits, "values_per_table": unique,
                    "tables": len(rows)})
