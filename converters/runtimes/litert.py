"""Run a .tflite in the LiteRT interpreter (what Android runs on the CPU).

Inputs are quantized with the input tensor's scale/zero point and outputs
dequantized, so callers compare float with float; the raw (quantized)
outputs are returned too, for LSB comparisons with TFLM.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class RunResult:
    outputs: np.ndarray      # dequantized float outputs, [N, ...]
    raw_outputs: np.ndarray  # outputs in the tensor's own dtype
    raw_inputs: np.ndarray   # inputs as fed (quantized for int models)


def interpreter(tflite: bytes, num_threads: Optional[int] = 1, *,
                reference_kernels: bool = False):
    """A LiteRT interpreter, with tensors allocated.

    ``reference_kernels`` selects TFLite's builtin kernels without the
    default delegates (no XNNPACK): they round as TFLM's kernels do, hence
    the baseline for a bit-level comparison with TFLM (XNNPACK and the
    BUILTIN_REF kernels round differently, and a 1-LSB difference in a hidden
    layer grows at the output).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                if reference_kernels else OpResolverType.AUTO)
    interp = Interpreter(model_content=bytes(tflite), num_threads=num_threads,
                         experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float ``x`` -> the input tensor's dtype with its scale/zero point."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return np.asarray(x, dtype=dtype)
    scale, zero = detail["quantization"]
    if scale == 0 and np.issubdtype(np.asarray(x).dtype, np.integer):
        return np.asarray(x).astype(dtype)  # indices (token ids) as they are
    if scale == 0:
        raise ValueError(f"input tensor {detail['name']!r} is {dtype.__name__}"
                         " but has no quantization scale")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale) + zero
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(detail["dtype"], np.floating):
        return np.asarray(q, np.float32)
    scale, zero = detail["quantization"]
    return (q.astype(np.float32) - zero) * scale


def run(tflite: bytes, x: np.ndarray, *, num_threads: int = 1,
        reference_kernels: bool = False) -> RunResult:
    """Run ``x`` ([N, ...] float) through the model one sample at a time."""
    interp = interpreter(tflite, num_threads,
                         reference_kernels=reference_kernels)
    inp = interp.get_input_details()
    out = interp.get_output_details()
    if len(inp) != 1 or len(out) != 1:
        raise ValueError("validation supports single-input single-output "
                         f"models; this one has {len(inp)} inputs and "
                         f"{len(out)} outputs")
    inp, out = inp[0], out[0]
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32)
    expected = tuple(inp["shape"][1:])
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"data x has shape {x.shape}; the model expects "
                         f"(N, {', '.join(map(str, expected))})")
    xq = quantize(x, inp)
    raws = []
    for row in xq:
        interp.set_tensor(inp["index"], row[None, ...])
        interp.invoke()
        raws.append(interp.get_tensor(out["index"])[0].copy())
    raw = np.stack(raws) if raws else np.zeros((0,) + tuple(out["shape"][1:]))
    return RunResult(dequantize(raw, out), raw, xq)
