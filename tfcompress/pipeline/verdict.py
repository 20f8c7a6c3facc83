"""The accuracy guard of ``optimize``: a compressed model is judged against
the user's float model and against plain int8 post-training quantization
(PTQ) of the same float model, never against an intermediate QAT model.

:func:`ptq_baseline` converts and validates the PTQ model the same way as the
compressed one (LiteRT, and TFLM for micro); :func:`judge` compares them
with :func:`side_by_side` rows (accuracy, bytes, flash, arena, latency) and
returns a :class:`Verdict` whose ``message`` is the one line the CLI prints
when the compressed model lost more than ``max_drop``.

Example:
    >>> ptq = ptq_baseline(float_model, x_calib, x_val, y_val, "micro")
    >>> verdict = judge(art, ptq, float_accuracy=0.97, max_drop=0.01,
    ...                 recipe=rec)
    >>> verdict.passed, verdict.message
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

#: default ``--max-accuracy-drop``: 1 point (a fraction, as in ``sensitivity``)
MAX_DROP = 0.01
#: where a rejected compressed model is written instead of ``model.tflite``
REJECTED_NAME = "model.rejected.tflite"
#: the PTQ baseline written beside every optimize result
PTQ_NAME = "model_ptq.tflite"


@dataclasses.dataclass
class Verdict:
    """Whether the compressed model may ship, and why not."""

    passed: bool
    metric: str
    float_value: Optional[float]
    ptq_value: Optional[float]
    compressed_value: Optional[float]
    max_drop: float
    drop_vs_float: Optional[float]
    drop_vs_ptq: Optional[float]
    message: Optional[str] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _latency_ms(tflite: bytes) -> Optional[float]:
    from converters.runtimes import latency
    try:
        result = latency.measure(tflite, threads=(1,), runs=20, warmup=3)
    except Exception:  # noqa: BLE001 - latency is informative only
        return None
    return round(float(result["threads"][1]["median_ms"]), 4)


def summary(art) -> dict:
    """One side-by-side row of an artifact's report: accuracy, agreement
    with the float model, bytes, gzip bytes, flash (LUT model when it
    validated), arena (TFLM) and LiteRT latency (1 thread, median)."""
    rep = art.report
    val = rep.get("validation", {})
    lite = val.get("litert", {})
    micro = val.get("micro", {})
    lut = val.get("micro_lut", {})
    flash = lut["bytes_after"] if lut.get("passed") else rep["tflite"]["bytes"]
    return {
        "accuracy": lite.get("accuracy"),
        "agreement": lite.get("agreement"),
        "bytes": rep["tflite"]["bytes"],
        "gzip_bytes": rep["tflite"]["gzip_bytes"],
        "flash_bytes": flash,
        "arena_bytes": lut.get("arena_bytes") if lut.get("passed")
        else micro.get("arena_bytes"),
        "latency_ms": _latency_ms(art.tflite),
        "tflm_passed": micro.get("passed") if micro else None,
        "outputs": {name: {k: o.get(k) for k in _OUTPUT_KEYS}
                    for name, o in lite.get("outputs", {}).items()},
    }


#: what the guard reads of each output's verdict (converters.verdicts)
_OUTPUT_KEYS = ("task", "metric", "value", "threshold", "higher_is_better",
                "passed")


def ptq_baseline(float_model, x_calib, x_eval, y_eval=None, *,
                 target: str = "micro", name: str = "ptq",
                 unroll: bool = False):
    """Plain int8 PTQ of ``float_model``, validated like the compressed
    model (float model as the reference). Returns the Artifact."""
    from converters import convert
    art = convert(float_model, x_calib, target=target, mode="int8",
                  name=f"{name} (int8 PTQ)", unroll=unroll)
    art.validate(x_eval, y_eval, require=False)
    return art


def hint(recipe) -> str:
    """What to try when a recipe lost too much, read from its stages."""
    tips = []
    for stage in getattr(recipe, "stages", []):
        p = stage.params
        if stage.kind == "prune" and p.get("target_sparsity", 0) > 0.8:
            tips.append(f"lower target_sparsity ({p['target_sparsity']:g})")
        if stage.kind == "cluster" and p.get("clusters", 16) < 16:
            tips.append(f"more clusters ({p['clusters']})")
        if stage.kind == "quantize" and p.get("weight_bits", 8) < 8:
            tips.append(f"more weight_bits ({p['weight_bits']})")
        if stage.kind == "binarize":
            tips.append("ternary instead of binary weights")
    tips.append("train longer (--epochs 2)")
    return ", ".join(tips) + f", or ship the int8 PTQ model ({PTQ_NAME})"


def judge(compressed: dict, ptq: dict, float_metrics: dict, *,
          max_drop: float = MAX_DROP, recipe=None) -> Verdict:
    """Compare ``compressed`` (a :func:`summary` row) with the float model's
    ``float_metrics`` and the ``ptq`` row.

    With labels the metric is accuracy; without, top-1 agreement with the
    float model (the float model agrees with itself: 1.0). Fails when the
    compressed model is more than ``max_drop`` below the float model or
    below the PTQ baseline. A model without either (regression,
    reconstruction, embeddings) is judged by :func:`judge_outputs`.
    """
    metric = "accuracy" if compressed.get("accuracy") is not None else \
        "agreement"
    ref = float_metrics.get(metric, 1.0 if metric == "agreement" else None)
    got, base = compressed.get(metric), ptq.get(metric)
    if got is None or ref is None:
        return judge_outputs(compressed, ptq, recipe=recipe) or Verdict(
            True, metric, ref, base, got, max_drop, None, None, None)
    vs_float = round(float(ref) - float(got), 6)
    vs_ptq = None if base is None else round(float(base) - float(got), 6)
    worst = max(vs_float, vs_ptq if vs_ptq is not None else -1.0)
    verdict = Verdict(worst <= max_drop + 1e-9, metric, ref, base, got,
                      max_drop, vs_float, vs_ptq)
    if not verdict.passed:
        parts = [f"{100 * vs_float:.2f} points below the float model "
                 f"({100 * ref:.2f}%)"]
        if vs_ptq is not None:
            parts.append(f"{100 * vs_ptq:.2f} below int8 PTQ "
                         f"({100 * base:.2f}%)")
        if vs_ptq is not None and vs_ptq > vs_float:
            parts.reverse()
        verdict.message = (
            f"compressed {metric} {100 * got:.2f}% is {' and '.join(parts)}"
            f", over --max-accuracy-drop {max_drop:g} ({100 * max_drop:g} "
            f"point{'s' if max_drop != 0.01 else ''}): not shipped (written "
            f"as {REJECTED_NAME}); try: {hint(recipe)}")
    return verdict


def judge_outputs(compressed: dict, ptq: dict, *,
                  recipe=None) -> Optional[Verdict]:
    """The guard for outputs without an accuracy: each output's own verdict
    (its metric against the targets and the float model, within its
    ``--tolerance``), and, for an error metric (lower is better), at most
    that tolerance worse than the int8 PTQ baseline. The first output that
    fails decides; None when no output has a verdict."""
    verdict = None
    for name, out in compressed.get("outputs", {}).items():
        if out.get("value") is None or out.get("passed") is None:
            continue
        base = ptq.get("outputs", {}).get(name, {})
        base_value = base.get("value") if base.get("metric") == \
            out["metric"] else None
        vs_ptq = None
        if base_value is not None and not out.get("higher_is_better"):
            vs_ptq = round(float(out["value"]) - float(base_value), 6)
        passed = bool(out["passed"]) and (vs_ptq is None or
                                          vs_ptq <= out["threshold"] + 1e-9)
        this = Verdict(passed, f"{name} {out['metric']}", None, base_value,
                       out["value"], out["threshold"], None, vs_ptq)
        if not passed:
            if out["passed"]:
                why = (f"is more than {out['threshold']:.4g} above the int8 "
                       f"PTQ model's {base_value:.4g}")
            else:
                bound = "at least" if out.get("higher_is_better") else \
                    "at most"
                why = (f"must be {bound} {out['threshold']:.4g} (int8 PTQ: "
                       f"{_num(base_value)})")
            this.message = (
                f"compressed output '{name}' ({out['task']}) {out['metric']} "
                f"{out['value']:.4g} {why}: not shipped (written as "
                f"{REJECTED_NAME}); try: {hint(recipe)}")
            return this
        verdict = verdict or this
    return verdict


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def float_metrics(float_model, x_eval, y_eval) -> dict:
    """Accuracy of the user's float Keras model on the validation data."""
    from converters.conversion.signature import as_input
    x = x_eval if isinstance(x_eval, dict) else as_input(x_eval)
    out = float_model.predict(x, verbose=0, batch_size=256)
    if isinstance(out, (list, dict)):   # several outputs: judged per output
        return {}                       # by the artifact's verdicts
    out = np.asarray(out)
    from converters.runtimes import metrics
    result = metrics.compare(out, out, y_eval)
    result.pop("samples", None)
    return result


def report_section(verdict: Verdict, compressed: dict, ptq: dict,
                   float_row: dict) -> dict:
    """The ``comparison`` entry of report.json: rows side by side and the
    verdict."""
    return {"float": float_row, "int8_ptq": ptq, "compressed": compressed,
            "verdict": verdict.to_dict()}


def _float_row(float_metrics_: dict, float_tflite: bytes) -> dict:
    from converters.conversion.artifact import gzip_bytes
    return {"accuracy": float_metrics_.get("accuracy"), "agreement": 1.0,
            "bytes": len(float_tflite), "gzip_bytes": gzip_bytes(float_tflite),
            "flash_bytes": len(float_tflite), "arena_bytes": None,
            "latency_ms": _latency_ms(float_tflite)}


def apply(art, float_model, x_calib, x_eval, y_eval, float_tflite: bytes, *,
          max_drop: float = MAX_DROP, recipe=None, out_dir=None,
          log=None, unroll: bool = False) -> bool:
    """Build the PTQ baseline, judge ``art`` (validated with the float
    model as its reference) and record it all in ``art.report``:
    ``comparison`` (float, int8 PTQ and compressed side by side, the
    verdict), a PTQ row in ``variants``, and ``validation.passed`` that
    holds only when the guard passed. Writes the PTQ model as
    ``model_ptq.tflite`` into ``out_dir``. Returns whether ``art`` ships."""
    def say(msg):
        if log is not None:
            log(msg)
    say(f"[{art.name}] int8 PTQ baseline of the float model, validated the "
        "same way")
    ptq_art = ptq_baseline(float_model, x_calib, x_eval, y_eval,
                           target=art.target, name=art.name, unroll=unroll)
    float_m = art.report.get("keras") or float_metrics(float_model, x_eval,
                                                       y_eval)
    compressed, ptq = summary(art), summary(ptq_art)
    verdict = judge(compressed, ptq, float_m, max_drop=max_drop,
                    recipe=recipe)
    section = report_section(verdict, compressed, ptq,
                             _float_row(float_m, float_tflite))
    art.report.setdefault("comparison", {}).update(section)
    art.report.setdefault("variants", []).append(
        {"name": "int8 PTQ (baseline)", "bytes": ptq["bytes"],
         "accuracy": ptq["accuracy"]})
    val = art.report["validation"]
    val["litert"]["passed"] = verdict.passed
    checks = [verdict.passed] + [val[k]["passed"] for k in
                                 ("micro", "micro_lut")
                                 if k in val and "passed" in val[k]]
    val["passed"] = all(bool(c) for c in checks)
    if not verdict.passed:
        val["failure"] = verdict.message
    if out_dir:  # written with the artifact set (staged, all-or-nothing)
        art.extra_files[PTQ_NAME] = ptq_art.tflite
    fmt = _pct if verdict.metric in ("accuracy", "agreement") else _num
    bound = "" if fmt is _pct else f" (threshold {verdict.max_drop:.4g})"
    say(f"[{art.name}] {verdict.metric}: float {fmt(verdict.float_value)}, "
        f"int8 PTQ {fmt(verdict.ptq_value)}, compressed "
        f"{fmt(verdict.compressed_value)}{bound} -> "
        f"{'passed' if verdict.passed else 'REJECTED'}")
    return verdict.passed


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
