"""One run of the precision planner, as ``tfcompress sensitivity
--activations`` does it: optional weight bits first, then activation
precision (and float fallback for android) per layer, applied, validated
and written.

Example:
    >>> result = run(model, x_val, y_val, target="micro",
    ...              max_accuracy_drop=0.005, out_dir="build/precision")
    >>> result["plan"].precisions, result["validation"]["passed"]
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from tfcompress.analysis import precision


def run(model, x: np.ndarray, y: Optional[np.ndarray], *, target: str,
        out_dir: str, max_bytes: Optional[int] = None,
        max_accuracy_drop: Optional[float] = None,
        weight_bits: bool = False, ship: bool = True) -> dict:
    """Plan, apply, validate and write; returns ``{"sensitivity", "plan",
    "validation", "paths", "weight_plan", "artifact"}``.

    With ``weight_bits`` (micro): the weight-bits plan of
    :mod:`tfcompress.analysis.mixed_precision` is chosen first under
    ``max_bytes`` (or ``max_accuracy_drop``), and the activation plan is
    then measured on that model with its LUT-compressed bytes, under the
    same budget. With ``ship`` the plan's model is also written as the
    target's artifact set in ``out_dir/<target>/`` (:func:`ship_artifact`).
    """
    bits, extra, weight_plan = None, None, None
    if weight_bits:
        from tfcompress.analysis import mixed_precision as mixed
        if target != "micro":
            raise ValueError("--weight-bits stores weights with TFLM's LUT "
                             "compression: use it with --target micro")
        sens_w = mixed.analyze(model, x, y)
        weight_plan = mixed.choose(model, sens_w, x, y, max_bytes=max_bytes,
                                   max_accuracy_drop=None if max_bytes
                                   else max_accuracy_drop)
        bits = weight_plan.bits
        extra = {}
        for b, u in weight_plan.uniform.items():   # measured as converted
            t = precision.Evaluator(model, x, y, target=target,
                                    weight_bits=u["bits"]).measure({})
            extra[{8: "uniform int8", 1: "all binary LUT"}.get(
                b, f"all {b}-bit LUT")] = {"bytes": t.bytes,
                                           "accuracy": t.accuracy}
    ev = precision.Evaluator(model, x, y, target=target, weight_bits=bits)
    sens = precision.analyze(ev)
    plan = precision.choose(ev, sens, max_bytes=max_bytes,
                            max_accuracy_drop=max_accuracy_drop)
    report = precision.validate(ev, plan, model, x, y)
    artifact = None
    if ship:
        artifact = ship_artifact(ev, plan, model, x, y,
                                 os.path.join(out_dir, target))
        report["artifact"] = {
            "dir": os.path.join(out_dir, target),
            "passed": artifact.passed,
            "bytes": artifact.report["tflite"]["bytes"],
            "failures": artifact.report["validation"].get("failures", [])}
        if not artifact.passed:
            report["failures"].append("the artifact failed validation: "
                                      + "; ".join(report["artifact"][
                                          "failures"]))
            report["passed"] = False
    paths = precision.write(sens, plan, ev, out_dir,
                            tflite=None if ship else precision.apply(ev, plan),
                            validation=report, extra_points=extra)
    if artifact is not None:
        paths["artifact"] = os.path.join(out_dir, target)
    return {"sensitivity": sens, "plan": plan, "validation": report,
            "paths": paths, "weight_plan": weight_plan,
            "artifact": artifact}


def ship_artifact(ev: precision.Evaluator, plan: precision.Plan, model,
                  x: np.ndarray, y: Optional[np.ndarray], out_dir: str):
    """The plan's model through the project's artifact path: checked for
    the target, validated against the float ``model`` (LiteRT; for micro
    TFLM, the encodings planner (LUT where weight bits made few values)
    and the TFLM C++ build with its measured arena), saved to ``out_dir``
    (``model.tflite``, ``report.json``; micro: ``model_data.cc/.h``)."""
    from converters.conversion.artifact import Artifact
    art = Artifact(ev.tflite(plan.precisions), target=ev.target,
                   mode="mixed", keras_model=model, name="model")
    art.check()
    art.report["precision"] = plan.recipe()["precision"]
    if ev.target == "micro":
        art.strip_strings()
    art.validate(x, y, require=False)
    # a plan over its budget is written as model.rejected.tflite
    art.save(out_dir, shipping=art.passed and plan.met)
    return art


def apply_recipe(model, x: np.ndarray, recipe, *,
                 target: Optional[str] = None) -> bytes:
    """A ``precision.yaml`` (path or dict) applied to ``model`` (e.g. the
    float model again, or one fine-tuned since): k-means weights per its
    ``weight_bits`` (micro, LUT-compressed), each layer at its precision.

    Raises:
        ValueError: the recipe has no ``precision`` section, or names a
            layer or precision the model cannot take (one line).
    """
    if isinstance(recipe, str):
        import yaml
        with open(recipe) as f:
            recipe = yaml.safe_load(f)
    section = (recipe or {}).get("precision")
    if not isinstance(section, dict) or not isinstance(
            section.get("layers"), dict):
        raise ValueError("precision recipe: expected a 'precision' section "
                         "with 'layers: {layer: int8|int16|float}' (as "
                         "tfcompress sensitivity --activations writes it)")
    ev = precision.Evaluator(model, x, None,
                             target=target or section.get("target", "micro"),
                             weight_bits=section.get("weight_bits"))
    return ev.shipped(ev.tflite(section["layers"]))
