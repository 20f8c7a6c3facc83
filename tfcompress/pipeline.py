"""The end-to-end jobs behind the CLI and ``make tflite``: compress (optional),
convert, validate, write artifacts and reports.

Both functions return the :class:`converters.Artifact`; its ``report`` holds
everything and ``passed`` says whether validation passed.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from tfcompress import data as datasets
from tfcompress import stats


def _say(log: Optional[Callable[[str], None]], msg: str) -> None:
    if log is not None:
        log(msg)


def float_baseline(model, x_eval, y_eval) -> dict:
    """Size and accuracy of the uncompressed float32 .tflite."""
    from converters import convert_bytes, litert, validate
    tflite = convert_bytes(model, mode="float32")
    run = litert.run(tflite, x_eval)
    out = {"bytes": len(tflite), **validate.compare(run.outputs, None, y_eval)}
    out.pop("samples", None)
    return out


def convert_and_validate(model, x_calib, x_eval, y_eval=None, *,
                         target="android", mode="int8", out_dir=None,
                         name="model", float_model=None, stages=None,
                         layer_report=None, log=None, device=None):
    """Convert ``model``, validate it on ``(x_eval, y_eval)``, save to
    ``out_dir``. ``float_model`` (default: ``model``) gives the float baseline
    for size and accuracy."""
    from converters import convert
    started = time.perf_counter()
    _say(log, f"[{name}] converting ({target}, {mode}) with "
              f"{min(len(x_calib), 500)} calibration samples")
    art = convert(model, x_calib, target=target, mode=mode, name=name)
    art.device = device
    _say(log, f"[{name}] validating on {len(x_eval)} samples in LiteRT"
              + (" and TFLM (arena bisection)" if target == "micro" else ""))
    art.validate(x_eval, y_eval, require=False)
    baseline = float_baseline(float_model or model, x_eval, y_eval)
    art.report["float"] = baseline
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
    if out_dir:
        art.save(out_dir)
        _say(log, f"[{name}] wrote {out_dir}")
    return art


def optimize(model, x, y, recipe, *, target="android", out_dir=None,
             name="model", holdout=datasets.HOLDOUT, log=None, device=None,
             **compress_kw):
    """Run ``recipe`` on ``model`` with ``(x, y)``, then convert and validate
    on a seeded ``holdout`` share of the data."""
    from tfcompress.stages import compress
    from tfcompress.recipe import get
    rec = get(recipe)  # fail on a bad recipe before anything else
    if y is None:
        raise datasets.DataError("optimize needs labels: DATA.npz has no 'y'")
    datasets.check_for_model(x, y, model)
    (x_tr, y_tr), (x_ho, y_ho) = datasets.split(x, y, holdout)
    started = time.perf_counter()
    _say(log, f"[{name}] recipe {rec.name}: "
              + " -> ".join(f"{s.kind}({s.epochs} ep)" for s in rec.stages))
    result = compress(model, (x_tr, y_tr), None, rec, **compress_kw)
    train_s = round(time.perf_counter() - started, 2)
    art = convert_and_validate(
        result.model, x_tr, x_ho, y_ho, target=target, out_dir=None,
        name=name, float_model=model, stages=result.history,
        layer_report=result.report, log=log, device=device)
    art.report["recipe"] = rec.to_dict()
    art.report["timings"]["train_s"] = train_s
    if out_dir:
        art.save(out_dir)
        _say(log, f"[{name}] wrote {out_dir}")
    return art


def load_tflite(path: str) -> bytes:
    import os
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    with open(path, "rb") as f:
        return f.read()


def validate_file(path: str, x: np.ndarray, y=None, *, target="android"):
    """Validate a .tflite file on data (no float model: accuracy, and TFLM
    agreement with LiteRT for micro)."""
    from converters import Artifact
    tflite = load_tflite(path)
    mode = _mode_of(tflite)
    art = Artifact(tflite, target=target, mode=mode, name=path)
    art.validate(x, y, require=False)
    return art


def _mode_of(tflite: bytes) -> str:
    from converters import read
    info = read(tflite)
    dtypes = {t.dtype for t in info.input_details}
    if dtypes == {"INT8"}:
        return "int8"
    if dtypes == {"INT16"}:
        return "int16x8"
    consts = {t.dtype for t in info.tensors if t.is_constant}
    if "FLOAT16" in consts:
        return "float16"
    return "dynamic" if "INT8" in consts else "float32"
