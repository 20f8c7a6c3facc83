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
    fig, ax = plt.subplots(figsize=(9, 6.5))
    names = {"int8": "all int8", "int16": "all int16x8",
             "float": "all float32"}
    if plan.weight_bits:   # these are measured with the weight bits
        names = {k: f"weight bits + {v} act." for k, v in names.items()}
    points = [(names[k], t.bytes, 100 * t.accuracy)
              for k, t in sens.uniform.items()]
    points += [(label, p["bytes"], 100 * p["accuracy"])
               for label, p in (extra_points or {}).items()]
    markers = "osD^vP<>Xh"
    for k, (label, xv, yv) in enumerate(points):   # one legend entry each
        ax.scatter([xv], [yv], s=55, marker=markers[k % len(markers)],
                   color=f"C{k % 10}", zorder=3,
                   label=f"{label}: {xv:,} B, {yv:.1f}%")
    if len(plan.path) > 1:
        ax.plot([t.bytes for t in plan.path],
                [100 * t.accuracy for t in plan.path], ":", color="tab:blue",
                lw=1, label="greedy path (one layer per step)")
    ax.scatter([plan.trial.bytes], [100 * plan.trial.accuracy], marker="*",
               s=260, color="black", zorder=4,
               label=f"chosen mix ({plan.trial.bytes:,} B, "
                     f"{100 * plan.trial.accuracy:.1f}%): " + _summary(plan))
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
    ax.set_ylim(max(0.0, min(ys) - pad), min(101.0, max(ys) + pad))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=1, borderaxespad=0.0)
    fig.tight_layout()
    return _save(fig, path)


def _summary(plan) -> str:
    up = {n: p for n, p in plan.precisions.items() if p != "int8"}
    text = ", ".join(f"{n}={p}" for n, p in up.items()) or "all int8 act."
    if plan.weight_bits:
        text = ", ".join(f"{n}={b}-bit" for n, b in
                         plan.weight_bits.items()) + "; " + text
    return text if len(text) <= 60 else text[:57] + "..."
