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

from typing import Optional

import numpy as np

from tfcompress.analysis import precision


def run(model, x: np.ndarray, y: Optional[np.ndarray], *, target: str,
        out_dir: str, max_bytes: Optional[int] = None,
        max_accuracy_drop: Optional[float] = None,
        weight_bits: bool = False) -> dict:
    """Plan, apply, validate and write; returns ``{"sensitivity", "plan",
    "validation", "paths", "weight_plan"}``.

    With ``weight_bits`` (micro): the weight-bits plan of
    :mod:`tfcompress.analysis.mixed_precision` is chosen first under
    ``max_bytes`` (or ``max_accuracy_drop``), and the activation plan is
    then measured on that model with its LUT-compressed bytes, under the
    same budget.
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
        extra = {{8: "uniform int8", 1: "all binary LUT"}.get(
            b, f"all {b}-bit LUT"): {"bytes": u["bytes"],
                                     "accuracy": u["accuracy"]}
            for b, u in weight_plan.uniform.items()}
    ev = precision.Evaluator(model, x, y, target=target, weight_bits=bits)
    sens = precision.analyze(ev)
    plan = precision.choose(ev, sens, max_bytes=max_bytes,
                            max_accuracy_drop=max_accuracy_drop)
    report = precision.validate(ev, plan, model, x, y)
    paths = precision.write(sens, plan, ev, out_dir,
                            tflite=precision.apply(ev, plan),
                            validation=report, extra_points=extra)
    return {"sensitivity": sens, "plan": plan, "validation": report,
            "paths": paths, "weight_plan": weight_plan}
