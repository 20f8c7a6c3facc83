"""PRUNE encoding: a kept-element bit mask plus the kept values.

The layout the TFLM kernel reads (``decode_state_prune.cc``, decode type 2):

* encoded tensor: one bit per element in C order, most significant bit
  first within each byte; 1 = the element is kept, 0 = it equals the zero
  point of its channel;
* ancillary tensor: DCM (byte 4 = prune version 1) followed by the kept
  values, in element order, in the tensor's own type (little-endian).

A pruned element decodes to the zero point: the tensor's single zero point,
or, for an ``int8`` tensor quantized per channel with some non-zero zero
point, its channel's (other types must have all zero points zero). The
channel axis must be the first or the last (as for per-channel quantized
weights). Per-channel quantization is untouched: the decoded tensor keeps
the original scales and zero points.

A 75%-sparse int8 tensor stores 1/8 + 1/4 of its bytes (plus 16).

Example:
    >>> enc = encode(weights, quant)
    >>> len(enc.data), len(enc.ancillary)
"""

from __future__ import annotations

import numpy as np

from converters.encodings.decode import (DCM_BYTES, DecodeType, Encoded,
                                         EncodingError, Quant, dcm)

__all__ = ["decode", "encode"]

_VERSION = 1
_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.float32)


def _zero_points(array: np.ndarray, quant: Quant | None) -> np.ndarray:
    if quant is None or not quant.zero_points:
        return np.zeros(array.size, np.int64)
    zps = set(quant.zero_points)
    if quant.channels > 1:
        if quant.axis not in (0, array.ndim - 1):
            raise EncodingError(
                f"PRUNE: per-channel axis {quant.axis} of a rank-{array.ndim} "
                f"tensor; the kernel supports the first or last axis")
        if zps != {0} and array.dtype != np.int8:
            raise EncodingError(
                f"PRUNE: {array.dtype} tensor with non-zero zero points; the "
                f"kernel decodes per-channel zero points for int8 only")
        # the kernel reads one zero point for all channels unless some differ
        # from zero (then it reads them all)
        if zps == {0}:
            return np.zeros(array.size, np.int64)
        if len(quant.zero_points) == 1:
            return np.full(array.size, quant.zero_points[0], np.int64)
        return quant.per_element(array.shape)
    if array.dtype != np.int8 and zps != {0}:
        raise EncodingError(f"PRUNE: {array.dtype} tensor with zero point "
                            f"{quant.zero_points[0]}; must be 0")
    return np.full(array.size, quant.zero_points[0], np.int64)


def _as_int(flat: np.ndarray) -> np.ndarray:
    """Values compared with the zero point as the kernel sees them: floats
    by bit pattern (-0.0 is kept), bools as 0/1."""
    if flat.dtype == np.float32:
        return flat.view(np.int32).astype(np.int64)
    return flat.astype(np.int64)


def encode(array: np.ndarray, quant: Quant | None = None) -> Encoded:
    """PRUNE-encode a constant tensor.

    Args:
        array: the tensor's values (bool, int8/16/32/64 or float32).
        quant: its quantization (zero points and channel axis), if any.

    Raises:
        EncodingError: a type or quantization the kernel cannot decode.
    """
    array = np.asarray(array)
    if array.dtype.type not in _TYPES:
        raise EncodingError(f"PRUNE: no decoder for {array.dtype} tensors")
    if array.size < 2:
        raise EncodingError("PRUNE: the tensor has fewer than 2 elements")
    flat = array.ravel()
    keep = _as_int(flat) != _zero_points(array, quant)
    mask = np.packbits(keep.astype(np.uint8), bitorder="big")
    values = flat[keep].astype(flat.dtype.newbyteorder("<"))
    ancillary = dcm(DecodeType.PRUNE, bytes([_VERSION])) + values.tobytes()
    return Encoded("prune", mask.tobytes(), ancillary, {
        "kept": int(keep.sum()), "elements": int(flat.size),
        "sparsity": round(1.0 - float(keep.mean()), 4)})


def decode(enc: Encoded, shape: tuple[int, ...], dtype,
           quant: Quant | None = None) -> np.ndarray:
    """The tensor as the TFLM kernel rebuilds it (reference for tests)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) if shape else 1
    keep = np.unpackbits(np.frombuffer(enc.data, np.uint8),
                         bitorder="big")[:n].astype(bool)
    values = np.frombuffer(enc.ancillary[DCM_BYTES:],
                           dtype.newbyteorder("<"))
    if values.size != keep.sum():
        raise EncodingError(f"PRUNE: {values.size} kept values for "
                            f"{int(keep.sum())} mask bits")
    zps = _zero_points(np.zeros(shape, dtype), quant)
    if dtype == np.float32:
        out = zps.astype(np.int32).view(np.float32)
    else:
        out = zps.astype(dtype)
    out[keep] = values
    return out.reshape(shape)
