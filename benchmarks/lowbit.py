"""Low-bit weights: binary and 4-bit, on stock TFLite/TFLM."""

from __future__ import annotations

import time

from benchmarks.common import (
    clone,
    digits_base,
    fmt,
    gz,
    litert_metric,
    log,
    tf_convert,
)


def bench_lowbit(res: dict) -> None:
    """Digits with binary weights (recipe ``binary``: +-alpha per channel,
    first/last layers 8-bit, PTQ) and 4-bit weight QAT (recipe ``int4``):
    accuracy, .tflite bytes, TFLM flash with LUT (index width from the
    values per channel), bits per weight stored, the LUT model's TFLM
    outputs against the uncompressed model's."""
    from converters import convert_bytes
    from converters.runtimes import litert
    from converters.runtimes import metrics as validate
    from sample_models import digits
    from tfcompress.keras2 import lowbit_export
    from tfcompress.pipeline.recipe import Recipe
    from tfcompress.pipeline.stages import compress
    (x, y), (xt, yt) = digits.load_data()
    base = digits_base(res, "lowbit")
    rows = {}
    for recipe, label in (("binary", "binary weights (first/last 8-bit), PTQ"),
                          ("int4", "4-bit weight QAT (first/last 8-bit)")):
        rec = Recipe.load(recipe)
        rec.fit["verbose"] = 0
        log(f"lowbit: digits recipe {recipe} "
            f"({sum(s.epochs for s in rec.stages)} epochs)")
        t0 = time.perf_counter()
        model = compress(clone(base), (x, y), (xt, yt), rec).model
        train_s = time.perf_counter() - t0
        tflite = convert_bytes(model, x, mode="int8")
        run = litert.run(tflite, xt, reference_kernels=True)
        _, rep = lowbit_export.micro_export(tflite, run.raw_inputs[:100])
        rows[label] = {"acc": validate.compare(run.outputs, None, yt)[
            "accuracy"], "bytes": len(tflite), "gzip": gz(tflite),
            "unique": lowbit_export.channel_unique(tflite), "train_s": train_s,
            **rep}
    for label, key in (("plain converter PTQ int8", "ptq"),
                       ("tfcompress pcqat (micro)", "pcqat")):
        r = res.get("digits_rows", {}).get(label)
        if r is None:
            continue
        tflite = r["tflite"]
        ref = litert.run(tflite, xt[:100], reference_kernels=True)
        _, rep = lowbit_export.micro_export(tflite, ref.raw_inputs)
        rows[label] = {"acc": r["acc"], "bytes": len(tflite),
                       "gzip": gz(tflite),
                       "unique": lowbit_export.channel_unique(tflite), **rep}
    res["lowbit"] = {"rows": rows, "float_acc": litert_metric(
        tf_convert(base, mode="float32"), xt, yt)}


def render_lowbit(res: dict) -> str:
    """Markdown for :func:`bench_lowbit` (empty when it did not run)."""
    lb = res.get("lowbit")
    if not lb:
        return ""
    out = ["| digits | accuracy (LiteRT) | .tflite bytes | gzip bytes | "
           "TFLM flash with LUT | LUT index bits (per layer) | bits per "
           "weight stored | max values per channel | LUT model = int8 model "
           "in TFLM | arena min (int8 / LUT) |",
           "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | ---: |"]
    for name, r in lb["rows"].items():
        bits = ", ".join(f"{k} {v}" for k, v in sorted(r["bits"].items())) \
            or "-"
        uniq = ", ".join(f"{k} {v}" for k, v in r["unique"].items())
        same = "-" if r["tflm_equal"] is None else (
            "yes" if r["tflm_equal"] else f"no ({r['tflm_max_diff']} LSB)")
        arena = (f"{fmt(r.get('arena_before'))} / {fmt(r.get('arena_after'))}"
                 if r.get("arena_after") else "-")
        out.append(f"| {name} | {r['acc']:.4f} | {fmt(r['bytes'])} | "
                   f"{fmt(r['gzip'])} | {fmt(r['bytes_after'])} | {bits} | "
                   f"{r['stored_bits_per_weight']:.2f} | {uniq} | {same} | "
                   f"{arena} |")
    return "\n".join(out)


