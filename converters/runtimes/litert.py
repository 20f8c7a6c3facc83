"""Run a .tflite in the LiteRT interpreter (what Android runs on the CPU).

Inputs are quantized with the input tensor's scale/zero point and outputs
dequantized, so callers compare float with float; the raw (quantized)
outputs are returned too, for LSB comparisons with TFLM.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from converters import progress


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
    check_io_sizes(interp)
    interp.allocate_tensors()
    return interp


def check_io_sizes(interp, limit: Optional[int] = None) -> None:
    """Refuse, before any allocation, inputs or outputs whose declared
    shapes need more bytes than a child may take (``limit``, default
    :func:`converters.runtimes.childproc.memory_cap`): one line naming the
    tensor, its shape and the cap."""
    from converters.runtimes.childproc import MEMORY_ENV, memory_cap
    limit = memory_cap() if limit is None else limit
    for kind, details in (("input", interp.get_input_details()),
                          ("output", interp.get_output_details())):
        for d in details:
            shape = [max(int(v), 1) for v in d["shape"]]
            nbytes = int(np.prod(shape, dtype=np.float64)) * \
                np.dtype(d["dtype"]).itemsize
            if nbytes > limit // 4:
                raise ValueError(
                    f"{kind} {d['name']!r} declares shape {shape} "
                    f"({nbytes:,} bytes), more than a quarter of the "
                    f"{limit / 2**30:.1f} GiB a child process may use "
                    f"({MEMORY_ENV} raises it); the file may be corrupt")


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
    with progress.bar(len(xq), "LiteRT", unit="sample") as p:
        for row in xq:
            interp.set_tensor(inp["index"], row[None, ...])
            interp.invoke()
            raws.append(interp.get_tensor(out["index"])[0].copy())
            p.update()
    raw = np.stack(raws) if raws else np.zeros((0,) + tuple(out["shape"][1:]))
    return RunResult(dequantize(raw, out), raw, xq)


def run_feeds(tflite: bytes, xs: list[np.ndarray], *, stateful: bool = False,
              num_threads: int = 1, reference_kernels: bool = False
              ) -> list[np.ndarray]:
    """Raw outputs (the tensors' own dtypes) of any model, one per output.

    ``xs`` holds one array per input, already in the input tensors' dtypes
    (:meth:`converters.runtimes.feeds.Feeds.prepare`): ``[N, ...]``, one
    invoke per sample, or for a stateful (streaming) model ``[S, T, ...]``:
    one invoke per step, and a fresh interpreter per sequence, so that its
    state (resource variables, initialized by ``CALL_ONCE``) starts over.
    """
    def fresh():
        interp = interpreter(tflite, num_threads,
                             reference_kernels=reference_kernels)
        return (interp, interp.get_input_details(),
                interp.get_output_details())

    interp, ins, outs = fresh()
    if len(xs) != len(ins):
        raise ValueError(f"the model has {len(ins)} inputs but {len(xs)} "
                         f"array(s) were given")

    def step(interp, ins, outs, rows):
        for d, row in zip(ins, rows):
            interp.set_tensor(d["index"], np.ascontiguousarray(
                row.reshape(d["shape"]), d["dtype"]))
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in outs]

    def squeeze(a: np.ndarray, d: dict) -> np.ndarray:
        return a.reshape(tuple(d["shape"][1:])) if len(d["shape"]) > 1 and \
            d["shape"][0] == 1 else a

    if not stateful:
        with progress.bar(len(xs[0]), "LiteRT", unit="sample") as p:
            rows = []
            for i in range(len(xs[0])):
                rows.append(step(interp, ins, outs, [x[i] for x in xs]))
                p.update()
        return [np.stack([squeeze(r[k], d) for r in rows])
                for k, d in enumerate(outs)]
    sequences = []
    for s in range(len(xs[0])):
        if s:
            interp, ins, outs = fresh()
        steps = [step(interp, ins, outs, [x[s, t] for x in xs])
                 for t in range(xs[0].shape[1])]
        sequences.append([np.stack([squeeze(r[k], d) for r in steps])
                          for k, d in enumerate(outs)])
    return [np.stack([seq[k] for seq in sequences])
            for k in range(len(outs))]
