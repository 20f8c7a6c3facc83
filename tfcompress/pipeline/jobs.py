"""The end-to-end jobs behind the CLI and ``make tflite``: compress (optional),
convert, validate, write artifacts and reports.

Both functions return the :class:`converters.Artifact`; its ``report`` holds
everything and ``passed`` says whether validation passed.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import numpy as np

from tfcompress.pipeline import data as datasets
from tfcompress.pipeline.verdict import MAX_DROP
from tfcompress.analysis import stats


def _say(log: Optional[Callable[[str], None]], msg: str) -> None:
    if log is not None:
        log(msg)


def float_baseline(model, x_eval, y_eval) -> dict:
    """Size and accuracy of the uncompressed float32 .tflite."""
    from converters import convert_bytes
    tflite = convert_bytes(model, mode="float32")
    out = {"bytes": len(tflite), **_float_metrics(tflite, x_eval, y_eval)}
    out["tflite"] = tflite  # not serialized: popped by convert_and_validate
    return out


def _float_metrics(tflite: bytes, x_eval, y_eval) -> dict:
    """LiteRT metrics of a float .tflite on ``x_eval`` against ``y_eval``
    (one output: accuracy or MAE; several are judged per output by the
    artifact's verdicts, not here)."""
    from converters.runtimes import feeds as feeding
    from converters.runtimes import litert
    from converters.runtimes import metrics as validate
    from converters.tflite import flatbuffer
    feeds = feeding.Feeds.of(flatbuffer.read(tflite))
    outs = feeds.dequantize(litert.run_feeds(tflite, feeds.prepare(x_eval)))
    if len(outs) != 1 or isinstance(y_eval, dict):
        return {}
    metrics = validate.compare(outs[0], None, y_eval)
    metrics.pop("samples", None)
    return metrics


def android_variants(art, model, x_calib, x_eval, y_eval, float_tflite,
                     out_dir, *, labels=None, normalization=None, log=None,
                     plan=None, reuse=False):
    """Write ``out_dir/android/`` (int8 + float16 variants with signatures,
    labels, normalization) and measure LiteRT latency of float32 vs int8 vs
    float16 side by side. Adds ``android``, ``latency`` and a float16 entry
    in ``variants`` to the report. With ``reuse`` (``art`` was converted
    with the I/O of ``plan``, an Android plan), ``art`` becomes the int8
    variant with its TFLite Metadata and packed labels."""

    from converters.targets import android
    from converters.runtimes import latency
    folder = os.path.join(out_dir, "android")
    _say(log, f"[{art.name}] writing Android variants (android/)")
    info = android.write_android(
        model, x_calib, folder, labels=labels, normalization=normalization,
        name="model", plan=plan, int8_tflite=art.tflite if reuse else None)
    if reuse:
        with open(os.path.join(folder, info["variants"]["int8"]["file"]),
                  "rb") as f:
            art.replace_tflite(f.read())
    art.report["android"] = {k: v for k, v in info.items() if k != "files"}
    art.report["android"]["files"] = [os.path.relpath(f, out_dir)
                                      for f in info["files"]]
    with open(os.path.join(folder, info["variants"]["fp16"]["file"]),
              "rb") as f:
        fp16 = f.read()
    art.report["variants"].append(
        {"name": "float16 android", "bytes": len(fp16),
         "accuracy": _float_metrics(fp16, x_eval, y_eval).get("accuracy")})
    _say(log, f"[{art.name}] timing float32 / int8 / float16 in LiteRT")
    timing = latency.compare({"float32": float_tflite, "int8": art.plain_tflite,
                              "float16": fp16}, threads=(1, 4), runs=30,
                             warmup=3)
    timing.pop("text", None)
    art.report["latency"] = timing


def convert_and_validate(model, x_calib, x_eval, y_eval=None, *,
                         target="android", mode="int8", out_dir=None,
                         name="model", float_model=None, stages=None,
                         layer_report=None, log=None, device=None,
                         labels=None, normalization=None, extra=None,
                         android=None, android_options=None, judging=None,
                         max_accuracy_drop=None, recipe=None, c_name=None,
                         unroll=False):
    """Convert ``model``, validate it on ``(x_eval, y_eval)``, save to
    ``out_dir``. ``float_model`` (default: ``model``) gives the float baseline
    for size and accuracy. ``android`` (default: ``target == "android"``)
    also writes ``out_dir/android/`` and the latency comparison;
    ``android_options`` (``io``, ``task``, ``sample_rate``, ``about``) shape
    the Android artifact, checked before converting. ``judging``
    (``tasks``, ``tolerances``, ``min_accuracy``) goes to
    :meth:`converters.Artifact.validate`. ``c_name`` names the micro C++
    namespace and files (default ``model``: ``model_data.h``).

    With ``max_accuracy_drop`` (a fraction) and a ``float_model``, the
    accuracy guard of :mod:`tfcompress.pipeline.verdict` applies: the model
    is compared with the float model and with its int8 PTQ, and one that
    lost more is saved as ``model.rejected.tflite`` (``passed`` False).

    ``x_calib``/``x_eval`` are arrays, or dicts keyed by input name for a
    model with several inputs; ``unroll`` unrolls recurrent layers."""
    from converters import convert
    from converters.files import prepare_out, staged_dir
    if out_dir:  # writable, with room: before any conversion
        prepare_out(out_dir, expected_artifact_bytes(model))
    if not isinstance(model, str):  # a SavedModel path has no Keras weights
        datasets.check_weights(model)
    for key, array in _named(x_calib).items():
        datasets.check_x(np.asarray(array), "representative data"
                         + (f" {key}" if isinstance(x_calib, dict) else ""))
    started = time.perf_counter()
    if android is None:
        android = target == "android" and mode == "int8"
    plan = None
    if android and not isinstance(model, str):
        from converters.targets.android_plan import plan as android_plan
        options = dict(android_options or {})
        options["about"] = {"name": name, **(options.get("about") or {})}
        plan = android_plan(model, x_calib, labels=labels,
                            normalization=normalization, **options)
    app_io = plan is not None and target == "android"
    _say(log, f"[{name}] converting ({target}, {mode}) with "
              f"{min(_rows(x_calib), 500)} calibration samples")
    art = convert(model, x_calib, target=target, mode=mode, name=name,
                  io=plan.io if app_io else None,
                  input_range=plan.input_range if app_io else None,
                  unroll=unroll)
    art.device = device
    guard = max_accuracy_drop is not None and float_model is not None
    if guard:  # agreement and accuracy against the user's float model
        art.keras_model = float_model
    art.c_name = c_name or art.c_name
    _say(log, f"[{name}] validating on {_rows(x_eval)} samples in LiteRT"
              + (" and TFLM (arena bisection)" if target == "micro" else ""))
    art.validate(x_eval, y_eval, require=False, **(judging or {}))
    baseline = float_baseline(float_model or model, x_eval, y_eval)
    float_tflite = baseline.pop("tflite")
    art.report["float"] = baseline
    if not isinstance(model, str):  # a SavedModel path has no Keras layers
        art.report["compressed_keras"] = stats.summary(model)
    lite = art.report["validation"]["litert"]
    art.report["variants"] = [
        {"name": "float32", "bytes": baseline["bytes"],
         "accuracy": baseline.get("accuracy")},
        {"name": f"{mode} {target}", "bytes": art.report["tflite"]["bytes"],
         "accuracy": lite.get("accuracy")}]
    if stages is not None:
        art.report["stages"] = stages
    if layer_report is not None:
        art.report["compression"] = layer_report
    art.report.setdefault("timings", {})["total_s"] = round(
        time.perf_counter() - started, 2)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(art.report.get(key), dict):
            art.report[key].update(value)
        else:
            art.report[key] = value
    shipping = True
    if guard:
        from tfcompress.pipeline import verdict as guards
        shipping = guards.apply(art, float_model, x_calib, x_eval, y_eval,
                                float_tflite, max_drop=max_accuracy_drop,
                                recipe=recipe, out_dir=out_dir, log=log,
                                unroll=unroll)
    if not out_dir:
        return art
    with staged_dir(out_dir) as stage:  # the set is all-new or all-old
        if android and shipping and not isinstance(model, str):
            if unroll:   # the variants convert the model again
                from converters.conversion.recurrent import unrolled
                model = unrolled(model)
            android_variants(art, model, x_calib, x_eval, y_eval,
                             float_tflite, stage, labels=labels,
                             normalization=normalization, log=log,
                             plan=plan, reuse=app_io)
        art.save(stage, staged=False, shipping=shipping)
    _say(log, f"[{name}] wrote {out_dir}" + (
        "" if shipping else " (model.rejected.tflite: not shipped)"))
    return art


def expected_artifact_bytes(model) -> int:
    """A floor for the bytes an artifact set of ``model`` takes: the int8,
    float16 and LUT models, the C array (about 6 characters a byte) and
    1 MiB of reports and plots."""
    if isinstance(model, str):  # a SavedModel folder: its variables
        params = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                     os.walk(model) for f in fs) // 4
    else:
        params = int(model.count_params())
    return (1 << 20) + params * (1 + 2 + 1 + 6)


def _named(x) -> dict:
    return dict(x) if isinstance(x, dict) else {"x": x}


def _rows(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def optimize(model, x, y, recipe, *, target="android", out_dir=None,
             name="model", holdout=datasets.HOLDOUT, log=None, device=None,
             strategy=None, labels=None, normalization=None,
             android_options=None, judging=None, val=None,
             epochs=None, seed=None, max_accuracy_drop=MAX_DROP, c_name=None,
             unroll=False, **compress_kw):
    """Run ``recipe`` on ``model`` with ``(x, y)``, then convert, validate
    and judge the result against the float model and its int8 PTQ.

    Validation data: ``val`` (``(x, y)``, e.g. ``--val DATA.npz``), all of
    ``(x, y)`` then trains; else a seeded ``holdout`` share of ``(x, y)``,
    which trains too with ``fit.all_data`` (see
    :mod:`tfcompress.pipeline.splits`). The stages restore their best epoch
    on it, and the accuracy guard (``max_accuracy_drop``, a fraction;
    ``None`` turns it off) judges on it.
    ``epochs`` multiplies every stage's epochs; ``seed`` seeds the stages.

    ``strategy`` (a ``tf.distribute`` strategy or a name: ``none``,
    ``mirrored``, ``multiworker``) is what ``compress`` trains under; in a
    multi-worker cluster only the chief writes ``out_dir``."""
    from tfcompress.pipeline import distribute
    from tfcompress.generation import compress
    from tfcompress.pipeline.recipe import get
    rec = get(recipe)  # fail on a bad recipe before anything else
    if epochs is not None:
        rec.fit["epochs_scale"] = float(epochs)
    if seed is not None:
        rec.fit["seed"] = int(seed)
    datasets.check_trainable_io(model, "optimize")
    datasets.check_for_model(x, y, model)
    datasets.check_weights(model)
    from tfcompress.pipeline.targets import training_targets
    y, rec = training_targets(model, x, y, rec, log=log, name=name)
    if target == "android" and out_dir:  # bad Android options: before training
        from converters.targets.android_plan import plan as android_plan
        android_plan(model, x, labels=labels, normalization=normalization,
                     **(android_options or {}))
    if val is not None:
        datasets.check_for_model(val[0], val[1], model, "validation data")
    from tfcompress.pipeline import splits
    split = splits.plan(x, y, val, holdout, rec.fit)
    (x_tr, y_tr), (x_ho, y_ho) = split.train, split.val
    data_info = split.info
    started = time.perf_counter()
    _say(log, f"[{name}] recipe {rec.name}: "
              + " -> ".join(f"{s.kind}({s.epochs} ep)" for s in rec.stages)
              + f"; {split.summary}")
    strategy = distribute.get_strategy(strategy)
    if out_dir and distribute.is_chief(strategy):
        from converters.files import prepare_out  # before any training
        prepare_out(out_dir, expected_artifact_bytes(model))
    result = compress(model, (x_tr, y_tr), (x_ho, y_ho), rec,
                      strategy=strategy, final_train_data=split.final,
                      **compress_kw)
    train_s = round(time.perf_counter() - started, 2)
    if out_dir and not distribute.is_chief(strategy):
        _say(log, f"[{name}] {distribute.worker_name(strategy)} is not the "
                  f"chief: {out_dir} is left to the chief")
    # saving converts variants with the model: every worker does it in step,
    # the non-chief ones into a temporary folder
    with distribute.write_dir(out_dir, strategy) as write_to:
        return convert_and_validate(
            result.model, x_tr, x_ho, y_ho, target=target, out_dir=write_to,
            name=name, float_model=model, stages=result.history,
            layer_report=result.report, log=log, device=device,
            labels=labels, normalization=normalization, c_name=c_name,
            android_options=android_options, judging=judging,
            max_accuracy_drop=max_accuracy_drop, recipe=rec, unroll=unroll,
            extra={"recipe": rec.to_dict(), "data": data_info,
                   "comparison": {"data": data_info},
                   "timings": {"train_s": train_s}})


# jobs on a user's .tflite file (re-exported: the CLI and callers use them here)
from tfcompress.pipeline.file_jobs import (  # noqa: E402,F401
    bench_file, inspect_file, load_tflite, read_tflite, validate_file)
