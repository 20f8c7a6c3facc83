"""Size vs accuracy of precision plans: the uniform choices (int8,
int16x8, float, LUT weight bits) and the chosen per-layer mix, with the
greedy path between them (:mod:`tfcompress.analysis.precision`)."""

from __future__ import annotations

from typing import Dict, Optional


def plot(sens, plan, path: str,
         extra_points: Optional[Dict[str, dict]] = None) -> Optional[str]:
    """PNG at ``path``: bytes (x) vs accuracy in % (y).

    Args:
        sens: :class:`~tfcompress.analysis.precision.Sensitivity`.
        plan: :class:`~tfcompress.analysis.precision.Plan`.
        extra_points: more uniform choices, ``{label: {"bytes",
            "accuracy"}}`` (e.g. uniform 4-bit LUT weights).
    """
    from converters.reporting.plots import _plt, _save
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    names = {"int8": "all int8", "int16": "all int16x8",
             "float": "all float32"}
    points = [(names[k], t.bytes, 100 * t.accuracy)
              for k, t in sens.uniform.items()]
    points += [(label, p["bytes"], 100 * p["accuracy"])
               for label, p in (extra_points or {}).items()]
    ax.scatter([p[1] for p in points], [p[2] for p in points], s=45,
               color="gray", zorder=3, label="uniform choices")
    for label, xv, yv in points:
        ax.annotate(label, (xv, yv), textcoords="offset points",
                    xytext=(6, 6), fontsize=9)
    if len(plan.path) > 1:
        ax.plot([t.bytes for t in plan.path],
                [100 * t.accuracy for t in plan.path], ":", color="tab:blue",
                lw=1, label="greedy path (one layer per step)")
    ax.scatter([plan.trial.bytes], [100 * plan.trial.accuracy], marker="*",
               s=220, color="tab:red", zorder=4,
               label="chosen mix: " + _summary(plan))
    ax.axhline(100 * sens.float_accuracy, color="black", lw=0.8, ls="--",
               label=f"float model {100 * sens.float_accuracy:.1f}%")
    budget = plan.budget
    if budget.get("max_bytes"):
        ax.axvline(budget["max_bytes"], color="tab:green", lw=1,
                   label=f"byte budget {budget['max_bytes']:,}")
    if budget.get("max_accuracy_drop") is not None:
        ax.axhline(100 * (sens.float_accuracy - budget["max_accuracy_drop"]),
                   color="tab:orange", lw=1,
                   label="accuracy budget (float - "
                         f"{100 * budget['max_accuracy_drop']:.1f} pt)")
    ax.set_xlabel("model bytes the target stores"
                  + (" (int8 + TFLM LUT)" if plan.weight_bits else ""),
                  fontsize=10)
    ax.set_ylabel("accuracy on validation data (%)", fontsize=10)
    ax.set_title(f"per-layer precision ({plan.target}): size vs accuracy",
                 fontsize=11)
    ax.grid(True, alpha=0.3)
    ys = [p[2] for p in points] + [100 * plan.trial.accuracy,
                                   100 * sens.float_accuracy]
    pad = max(0.5, 0.15 * (max(ys) - min(ys)))
    ax.set_ylim(max(0.0, min(ys) - pad), min(100.5, max(ys) + pad))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    fig.tight_layout()
    return _save(fig, path)


def _summary(plan) -> str:
    up = {n: p for n, p in plan.precisions.items() if p != "int8"}
    text = ", ".join(f"{n}={p}" for n, p in up.items()) or "all int8"
    return text if len(text) <= 40 else text[:37] + "..."
