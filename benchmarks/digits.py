"""Digits pipelines side by side (the main table): float32, plain PTQ,
tfmot PQAT, tfcompress prune+QAT and PCQAT."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import (
    LATENCY_RUNS,
    arena_of,
    clone,
    digits_base,
    gz,
    litert_metric,
    log,
    lut_flash,
    tf_convert,
)


def bench_digits(res: dict) -> None:
    from sample_models import digits
    from tfcompress.keras2.env import keras, tfmot
    from tfcompress.pipeline import jobs as pipeline
    from tfcompress.pipeline.recipe import Recipe
    from tfcompress.pipeline.stages import compress

    (x, y), (xt, yt) = digits.load_data()
    t0 = time.perf_counter()
    base = digits_base(res, "digits")
    res["digits_float_train_s"] = time.perf_counter() - t0
    res["digits_params"] = int(base.count_params())
    rows, blobs = {}, {}

    # float32
    t0 = time.perf_counter()
    f32 = tf_convert(base, mode="float32")
    res["convert_float32_s"] = time.perf_counter() - t0
    blobs["float32"] = f32
    rows["float32 Keras->TFLite"] = {"key": "float32", "tflite": f32,
                                     "acc": litert_metric(f32, xt, yt)}

    # plain PTQ
    t0 = time.perf_counter()
    ptq = tf_convert(clone(base), x, mode="int8")
    res["convert_ptq_s"] = time.perf_counter() - t0
    rows["plain converter PTQ int8"] = {"key": "ptq", "tflite": ptq,
                                        "acc": litert_metric(ptq, xt, yt)}

    # plain tfmot: prune_low_magnitude -> strip -> PQAT -> int8
    log("digits: plain tfmot prune 75% + PQAT (6 + 3 epochs)")
    t0 = time.perf_counter()
    steps = int(np.ceil(len(x) / 32))
    m = clone(base)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        m, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=0.75, begin_step=0,
            end_step=steps * 6))
    pruned.compile(optimizer=keras.optimizers.Adam(1e-3),
                   loss=keras.losses.SparseCategoricalCrossentropy(
                       from_logits=True), metrics=["accuracy"])
    pruned.fit(x, y, epochs=6, batch_size=32, validation_data=(xt, yt),
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
               verbose=0)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    annotated = tfmot.quantization.keras.quantize_annotate_model(stripped)
    pqat = tfmot.quantization.keras.quantize_apply(
        annotated,
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    pqat.compile(optimizer=keras.optimizers.Adam(1e-4),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True), metrics=["accuracy"])
    pqat.fit(x, y, epochs=3, batch_size=32, validation_data=(xt, yt),
             verbose=0)
    res["tfmot_train_s"] = time.perf_counter() - t0
    tfmot_b = tf_convert(pqat, x, mode="int8")
    rows["plain tfmot prune+PQAT int8"] = {"key": "tfmot", "tflite": tfmot_b,
                                           "acc": litert_metric(tfmot_b, xt, yt)}

    for recipe, label in (("prune_qat", "tfcompress prune_qat (micro)"),
                          ("pcqat", "tfcompress pcqat (micro)")):
        rec = Recipe.load(recipe)
        rec.fit["verbose"] = 0
        log(f"digits: tfcompress {recipe} "
            f"({sum(s.epochs for s in rec.stages)} epochs)")
        t0 = time.perf_counter()
        result = compress(clone(base), (x, y), (xt, yt), rec)
        res[f"{recipe}_train_s"] = time.perf_counter() - t0
        art = pipeline.convert_and_validate(
            result.model, x, xt, yt, target="micro", mode="int8",
            name=f"digits-{recipe}", float_model=base)
        r = art.report
        micro = r["validation"].get("micro", {})
        rows[label] = {
            "key": recipe, "tflite": art.plain_tflite,
            "acc": r["validation"]["litert"].get("accuracy"),
            "arena": micro.get("arena_bytes"),
            "arena_rec": micro.get("arena_recommended"),
            "passed": art.passed,
        }
        res[f"{recipe}_convert_s"] = r["timings"].get("convert_s")
        res[f"{recipe}_tflm_s"] = micro.get("seconds")
        res[f"{recipe}_pipeline_s"] = r["timings"].get("total_s")

    log("digits: TFLM arena + LUT for every int8 row")
    for label, row in rows.items():
        if row["key"] == "float32":
            row.update(flash=None, arena=None, arena_rec=None)
            continue
        if row.get("arena") is None:
            lo, rec_, why = arena_of(row["tflite"])
            row.update(arena=lo, arena_rec=rec_)
            if why:
                row["note"] = why
        flash, note, arena_lut = lut_flash(row["tflite"])
        row["flash"] = flash
        row["note"] = (row.get("note", "") + " " + note).strip()
        row["arena_lut"] = arena_lut

    log("digits: LiteRT latency, 1 thread, interleaved")
    from converters.runtimes import latency
    lat = latency.compare({lab: r["tflite"] for lab, r in rows.items()},
                          threads=(1,), runs=LATENCY_RUNS, warmup=10)
    for lab, r in rows.items():
        t = lat["models"][lab]["threads"][1]
        r["lat"] = (t["median_ms"], t["p90_ms"])
        r["bytes"] = len(r["tflite"])
        r["gzip"] = gz(r["tflite"])
    res["digits_rows"] = rows

    # conversion time for digits (pcqat deployable -> int8), TFLM validation
    res["digits_x"] = (x, y)
    res["digits_test_n"] = len(xt)


