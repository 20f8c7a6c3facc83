"""What is inside any .tflite: ops, tensors, quantization, sizes, verdicts.

Works on models this project did not produce. The report is a plain dict
(``tfcompress inspect MODEL.tflite --json`` prints it); :func:`format_text`
renders it as aligned tables.

Example:
    >>> report = inspect(open("model.tflite", "rb").read())
    >>> report["mode"], report["gpu"]["compatible"], report["micro"]
    ('int8', True, {'compatible': True, 'reason': None})
    >>> print(format_text(report))
"""

from __future__ import annotations

import mmap


from converters.tflite import flatbuffer
from converters.targets import gpu
from converters.targets import metadata_pack
from converters.tflite.flatbuffer import ModelInfo, Tensor

#: (op, weight input index) -> the output-channel axis of that weight.
_CHANNEL_AXIS = {("CONV_2D", 1): 0, ("FULLY_CONNECTED", 1): 0,
                 ("TRANSPOSE_CONV", 1): 0, ("DEPTHWISE_CONV_2D", 1): 3,
                 ("CONV_3D", 1): 4}
_INTS = ("INT8", "UINT8")


def inspect(tflite: bytes) -> dict:
    """Describe a .tflite flatbuffer.

    Args:
        tflite: the model bytes.

    Returns:
        A JSON-ready dict: ``size`` (total, constant, quantization-parameter,
        graph and metadata bytes), ``mode`` (float32, float16, dynamic, int8
        or int16x8, read from the tensor types), ``ops`` (name -> count),
        ``inputs``/``outputs`` (with their signature names),
        ``op_gpu`` (name -> None when every instance runs on the GPU, else
        ``{"cpu": instances on CPU, "reason": the first reason}``),
        ``signatures`` (key -> input and output names), ``tensors`` (dtype,
        shape, quantization; sparsity and unique values for constants),
        ``metadata`` (entry name -> bytes), ``tflite_metadata`` (the
        standard TFLite Metadata: task, labels, normalization; None when
        absent), ``micro`` and ``gpu`` verdicts.

    Raises:
        converters.flatbuffer.InvalidModelError: the bytes are not a .tflite.
    """
    data = tflite if isinstance(tflite, (bytes, mmap.mmap)) else bytes(tflite)
    info = flatbuffer.read(data)
    sizes, metadata = _sizes(data)
    gpu_verdict = gpu.check(info)
    fallback: dict[str, dict] = {}
    for row in gpu_verdict["fallback_ops"]:
        entry = fallback.setdefault(row["op"], {"cpu": 0,
                                                "reason": row["reason"]})
        entry["cpu"] += 1
    axes = _weight_axes(info)
    names = _signature_names(info)
    return {
        "size": sizes,
        "mode": guess_mode(info),
        "subgraphs": info.subgraphs,
        "operators": len(info.operators),
        "ops": info.op_counts(),
        "op_gpu": {name: fallback.get(name) for name in info.op_counts()},
        "inputs": [_io(t, names) for t in info.input_details],
        "outputs": [_io(t, names) for t in info.output_details],
        "signatures": {key: {"inputs": list(sig["inputs"]),
                             "outputs": list(sig["outputs"])}
                       for key, sig in info.signatures.items()},
        "tensors": [_tensor(t, axes.get(t.index)) for t in info.tensors],
        "metadata": metadata,
        "tflite_metadata": metadata_pack.summary(data),
        "description": info.description,
        "micro": micro_verdict(info),
        "gpu": gpu_verdict,
    }


def metadata(tflite: bytes) -> dict[str, bytes]:
    """The model's metadata entries (``Model.metadata``): name -> bytes."""
    from tensorflow.lite.python import schema_py_generated as fb
    model = fb.Model.GetRootAs(bytes(tflite), 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buf = model.Buffers(entry.Buffer())
        out[_name(entry.Name())] = bytes(buf.DataAsNumpy()) \
            if buf.DataLength() else b""
    return out


def guess_mode(info: ModelInfo) -> str:
    """The quantization mode a model was converted with, read from its
    tensor types: ``int16x8``, ``int8``, ``dynamic``, ``float16`` or
    ``float32``."""
    runtime = {t.dtype for t in info.tensors if not t.is_constant}
    weights = {t.dtype for t in info.tensors if t.is_constant and t.scale}
    consts = {t.dtype for t in info.tensors if t.is_constant}
    if "INT16" in runtime and "INT8" in consts:
        return "int16x8"
    if runtime & set(_INTS) and any(
            t.scale for t in info.tensors if not t.is_constant):
        return "int8"
    if weights & set(_INTS):
        return "dynamic"
    if "FLOAT16" in consts:
        return "float16"
    return "float32"


def micro_verdict(info: ModelInfo) -> dict:
    """``{"compatible": bool|None, "reason": str|None}`` for TFLite Micro,
    from :func:`converters.micro.check_compatible`; Flex ops never are."""
    flex = sorted({op.name for op in info.operators
                   if op.custom and op.name.startswith("Flex")})
    try:
        from converters.targets import micro
    except ImportError:
        micro = None
    verdict: dict = {"compatible": None,
                     "reason": "converters.targets.micro is not available"}
    if micro is not None:
        error = getattr(micro, "MicroError", ValueError)
        try:
            micro.check_compatible(info)
            verdict = {"compatible": True, "reason": None}
        except error as exc:
            verdict = {"compatible": False,
                       "reason": str(exc).splitlines()[0]}
    if flex and verdict["compatible"] is not False:
        verdict = {"compatible": False, "reason": (
            f"Flex op(s) {', '.join(flex)}: TFLM has no TensorFlow kernels; "
            "rewrite the model with TFLite builtin ops")}
    elif micro is None:
        custom = sorted({op.name for op in info.operators if op.custom})
        if custom:
            verdict = {"compatible": False, "reason": (
                f"custom op(s) {', '.join(custom)}: not in TFLM's resolver")}
    return verdict


# -- pieces ------------------------------------------------------------------
def _name(value) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


def _sizes(data: bytes):
    """Bytes of constant-tensor buffers, quantization parameters (scales and
    zero points live in the graph tables), metadata buffers and the rest."""
    from tensorflow.lite.python import schema_py_generated as fb
    model = fb.Model.GetRootAs(data, 0)

    def size(i: int) -> int:
        if i <= 0 or i >= model.BuffersLength():
            return 0
        buf = model.Buffers(i)
        return buf.DataLength() or int(buf.Size())

    used = set()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        used.update(graph.Tensors(t).Buffer()
                    for t in range(graph.TensorsLength()))
    metadata = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        metadata[_name(entry.Name())] = size(entry.Buffer())
    quant = 0  # per-tensor scale (float32) and zero point (int64) arrays
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            q = graph.Tensors(t).Quantization()
            if q is not None:
                quant += 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
    constant = sum(size(i) for i in used)
    meta = sum(metadata.values())
    return ({"total_bytes": len(data), "constant_bytes": constant,
             "quantization_bytes": quant, "metadata_bytes": meta,
             "graph_bytes": len(data) - constant - meta - quant}, metadata)


def _weight_axes(info: ModelInfo) -> dict[int, int]:
    """Constant tensor index -> output-channel axis, for weights of conv and
    fully-connected ops (looking through float16 DEQUANTIZE)."""
    producer = {}
    for op in info.operators:
        if op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] >= 0 \
                and info.tensors[op.inputs[0]].is_constant:
            producer[op.outputs[0]] = op.inputs[0]
    axes = {}
    for op in info.operators:
        for pos, idx in enumerate(op.inputs):
            axis = _CHANNEL_AXIS.get((op.name, pos))
            if axis is None or idx < 0:
                continue
            idx = producer.get(idx, idx)
            if info.tensors[idx].is_constant:
                axes[idx] = axis
    return axes


def _quant(t: Tensor) -> dict | None:
    if not t.scale:
        return None
    if len(t.scale) == 1:
        return {"scale": t.scale[0],
                "zero_point": t.zero_point[0] if t.zero_point else 0}
    zps = sorted(set(t.zero_point))
    return {"per_channel": True, "axis": t.quantized_dimension,
            "channels": len(t.scale), "scale_min": min(t.scale),
            "scale_max": max(t.scale),
            "zero_points": zps if len(zps) <= 4 else f"{len(zps)} distinct"}


def _signature_names(info: ModelInfo) -> dict[int, str]:
    """Tensor index -> its name in the ``serving_default`` (or first)
    signature."""
    sigs = info.signatures
    sig = sigs.get("serving_default") or next(iter(sigs.values()), None)
    if not sig:
        return {}
    return {i: n for part in ("inputs", "outputs")
            for n, i in sig[part].items()}


def _io(t: Tensor, names: dict[int, str]) -> dict:
    return {"name": t.name, "signature_name": names.get(t.index),
            "index": t.index, "dtype": t.dtype.lower(),
            "shape": list(t.shape), "quantization": _quant(t)}


def _tensor(t: Tensor, weight_axis: int | None) -> dict:
    row = {"index": t.index, "name": t.name, "dtype": t.dtype.lower(),
           "shape": list(t.shape), "constant": t.is_constant,
           "bytes": t.buffer_bytes, "quantization": _quant(t)}
    if t.is_constant and t.data is not None and t.data.size:
        row.update(flatbuffer.constant_stats(t, weight_axis))
    return row


# -- text --------------------------------------------------------------------
def text_table(headers: list[str], rows: list[list], indent: str = "  "
               ) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c)
                                            for c in r] for r in rows]
    numeric = [all(_is_number(r[i]) for r in rows) and bool(rows)
               for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        parts = [c.rjust(w) if numeric[i] and n else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _quant_text(q: dict | None) -> str:
    if not q:
        return ""
    if q.get("per_channel"):
        return (f"per-channel x{q['channels']} (axis {q['axis']}) "
                f"scale {q['scale_min']:.3g}..{q['scale_max']:.3g}")
    return f"scale {q['scale']:.4g} zp {q['zero_point']}"


def _gpu_cell(entry: dict | None, count: int) -> str:
    if entry is None:
        return "yes"
    some = "" if entry["cpu"] == count else f" ({entry['cpu']} of {count})"
    return f"NO{some}: {entry['reason']}"


def _yes(flag) -> str:
    return {True: "yes", False: "NO", None: "unknown"}[flag]


def format_text(report: dict) -> str:
    """Render an :func:`inspect` report as aligned text tables."""
    size = report["size"]
    out = [(f"size: {size['total_bytes']:,} bytes (constants "
            f"{size['constant_bytes']:,}, quantization params "
            f"{size['quantization_bytes']:,}, graph {size['graph_bytes']:,}, "
            f"metadata {size['metadata_bytes']:,})"),
           (f"mode: {report['mode']}   subgraphs: {report['subgraphs']}   "
            f"operators: {report['operators']}")]
    for key, sig in report["signatures"].items():
        out.append(f"signature {key!r}: inputs {', '.join(sig['inputs'])}; "
                   f"outputs {', '.join(sig['outputs'])}")
    if not report["signatures"]:
        out.append("signature: none (run by tensor index)")
    out += ["", "I/O", text_table(
        ["", "signature name", "tensor", "dtype", "shape", "quantization"],
        [[kind, t["signature_name"] or "", _short(t["name"]), t["dtype"],
          t["shape"],
          _quant_text(t["quantization"])]
         for kind, ts in (("input", report["inputs"]),
                          ("output", report["outputs"])) for t in ts])]
    out += ["", "ops", text_table(
        ["op", "count", "gpu"],
        [[name, count, _gpu_cell(report["op_gpu"].get(name), count)]
         for name, count in report["ops"].items()])]
    out += ["", "tensors", text_table(
        ["#", "name", "dtype", "shape", "quantization", "bytes", "zeros",
         "unique", "unique/ch"],
        [[t["index"], _short(t["name"]), t["dtype"], t["shape"],
          _quant_text(t["quantization"]), t["bytes"] or "",
          f"{t['sparsity']:.1%}" if "sparsity" in t else "",
          t.get("unique", ""), t.get("unique_per_channel_max", "")]
         for t in report["tensors"]])]
    if report["metadata"]:
        out += ["", "metadata", text_table(
            ["name", "bytes"],
            [[k, v] for k, v in report["metadata"].items()])]
    out += _metadata_text(report.get("tflite_metadata"))
    micro, gpu_ = report["micro"], report["gpu"]
    fallback = gpu_["fallback_ops"]
    out += ["", "verdicts", text_table(["target", "runs", "why"], [
        ["TFLM (micro)", _yes(micro["compatible"]), micro["reason"] or ""],
        ["GPU delegate", _yes(gpu_["compatible"]),
         (f"{len(fallback)} of {report['operators']} ops on CPU, first "
          f"{fallback[0]['op']}: {fallback[0]['reason']}") if fallback
         else gpu_["note"]],
    ])]
    return "\n".join(out)


def _metadata_text(meta: dict | None) -> list[str]:
    """The TFLite Metadata lines of :func:`format_text` (none without)."""
    if not meta:
        return []
    about = ", ".join(f"{k} {meta[k]!r}" for k in (
        "name", "version", "author", "license") if meta.get(k))
    out = ["", f"TFLite Metadata: task {meta.get('task')}; {about}; "
               f"min parser {meta.get('min_parser_version')}"]
    rows = []
    for kind in ("inputs", "outputs"):
        for t in meta[kind]:
            extra = [f"{k} {t[k]}" for k in ("color_space", "sample_rate",
                                             "channels") if k in t]
            if "normalization" in t:
                n = t["normalization"]
                extra.append(f"mean {n['mean']} std {n['std']}")
            if "range" in t:
                extra.append(f"range {t['range'][0]}..{t['range'][1]}")
            if "labels" in t:
                labels = t["labels"]
                extra.append(f"{len(labels)} labels ({t['labels_file']}): "
                             + _short(", ".join(labels), 50))
            rows.append([kind[:-1], t["name"] or "", t["content"] or "",
                         "; ".join(extra)])
    return out + [text_table(["", "name", "content", "details"], rows)]
