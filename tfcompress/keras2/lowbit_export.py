"""Low-bit models as TFLM ships them: values per channel, LUT export.

A low-bit model (:mod:`tfcompress.keras2.lowbit`) converts to a stock int8
.tflite whose kernels hold at most 2**bits values per channel;
:func:`micro_export` stores them as 1-4 bit LUT indices for TFLM and proves
the result computes the same.

Example:
    >>> lowbit_export.channel_unique(tflite)["dense"]
    2
    >>> small, report = lowbit_export.micro_export(tflite, x_int8)
"""

from __future__ import annotations

import numpy as np

__all__ = ["channel_unique", "micro_export"]


# -- export ------------------------------------------------------------------
def channel_unique(tflite: bytes) -> dict:
    """``{layer: max unique int8 values per channel}`` of the constant int8
    weight tensors in ``tflite`` (per tensor when quantized per tensor)."""
    from converters.tflite import flatbuffer
    from converters.targets import micro
    info = flatbuffer.read(bytes(tflite))
    out = {}
    for op in info.operators:
        for i in op.inputs:
            t = info.tensors[i] if i >= 0 else None
            if t is None or not t.is_constant or t.dtype != "INT8" or \
                    t.data.ndim < 2:
                continue
            a = t.data
            if len(t.scale) > 1:
                a = np.moveaxis(a, t.quantized_dimension, 0)
                rows = a.reshape(a.shape[0], -1)
            else:
                rows = a.reshape(1, -1)
            out[micro.layer_of(info, op)] = max(
                int(np.unique(r).size) for r in rows)
    return out


def micro_export(tflite: bytes, x_int8: np.ndarray, *, max_bits: int = 4):
    """LUT-compress ``tflite`` for TFLM and prove it computes the same.

    Runs :func:`converters.lut.compress_clustered` (index width per tensor
    from its unique values per channel), then the compressed and the
    uncompressed model in the TFLM interpreter on ``x_int8``; they must
    agree exactly.

    Returns:
        ``(compressed bytes or None, report)``: ``report`` holds
        ``bytes_before``/``bytes_after`` (flash), ``weights``, ``bits`` (per
        layer index width, 8 for uncompressed int8 tensors),
        ``index_bits_per_weight`` (mean index width over all int8 weights),
        ``stored_bits_per_weight`` (constant-data bits, LUT tables and
        headers included, per weight), ``tflm_equal`` and ``tflm_max_diff``.

    Raises:
        converters.lut.LutError: the compressed model does not run in TFLM.

    Example:
        >>> small, rep = micro_export(tflite, x_int8)
        >>> rep["index_bits_per_weight"], rep["bytes_after"]
    """
    from converters.tflite import flatbuffer
    from converters.encodings import lut
    from converters.runtimes import tflm
    tflite = bytes(tflite)
    info = flatbuffer.read(tflite)
    small, stats = lut.compress_clustered(tflite, info, max_bits=max_bits)
    weights = {t.index: int(t.data.size) for t in info.tensors
               if t.is_constant and t.dtype == "INT8" and t.data.ndim >= 1}
    n = sum(weights.values())
    chosen = {c["index"]: c for c in stats["tensors"]} if small else {}
    idx_bits = sum(chosen[i]["bits"] * s if i in chosen else 8 * s
                   for i, s in weights.items())
    after = flatbuffer.read(small) if small is not None else info
    report = {
        "bytes_before": len(tflite),
        "bytes_after": len(small) if small is not None else len(tflite),
        "weights": n,
        "bits": {c["layer"]: c["bits"] for c in chosen.values()},
        "index_bits_per_weight": round(idx_bits / n, 3) if n else None,
        "stored_bits_per_weight": round(
            8 * _int8_const_bytes(after) / n, 3) if n else None,
        "skipped": {s["layer"]: s["reason"] for s in stats["skipped"]},
    }
    if small is None:
        report.update(tflm_equal=None, tflm_max_diff=None,
                      reason=stats.get("reason", "no tensor qualifies"))
        return None, report
    x = np.asarray(x_int8)
    want = tflm.run(tflite, x, arena_size=stats["arena_before"] + 1024)
    got = tflm.run(small, x, arena_size=stats["arena_after"] + 1024)
    diff = max(int(np.max(np.abs(g.astype(np.int32) - w.astype(np.int32))))
               for g, w in zip(got, want))
    report.update(tflm_equal=diff == 0, tflm_max_diff=diff,
                  arena_before=stats["arena_before"],
                  arena_after=stats["arena_after"])
    return small, report


def _int8_const_bytes(info) -> int:
    """Bytes of constant weight data: int8 tensors plus the packed LUT
    index / value-table buffers TFLM compression adds (UINT8)."""
    return sum(int(t.data.nbytes) for t in info.tensors
               if t.is_constant and t.dtype in ("INT8", "UINT8"))
