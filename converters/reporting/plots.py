"""PNG plots for reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from typing import List, Optional


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    from converters.files import atomic_write
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write(path, buf.getvalue())


def place_labels(ax, points, texts, *, fontsize: int = 8) -> list:
    """Annotate each point with its text, choosing for each label the first
    of several offsets whose box overlaps no label placed before it and no
    other point (measured in display pixels). Returns the annotations."""
    from matplotlib.text import Text
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    candidates = [(8, 4), (8, -4), (-8, 4), (-8, -4), (8, 30), (8, -30),
                  (-8, 30), (-8, -30), (8, 56), (8, -56), (-8, 56), (-8, -56)]
    marks = [ax.transData.transform(p) for p in points]
    placed, notes = [], []
    for (x, y), text in zip(points, texts):
        for dx, dy in candidates:
            note = ax.annotate(text, (x, y), textcoords="offset points",
                               xytext=(dx, dy), fontsize=fontsize,
                               ha="left" if dx > 0 else "right",
                               va="bottom" if dy > 0 else "top",
                               arrowprops=dict(arrowstyle="-", color="0.6",
                                               lw=0.6))
            # the text's own box (an annotation's includes its arrow)
            box = Text.get_window_extent(note, renderer).expanded(1.05, 1.15)
            clash = any(box.overlaps(b) for b in placed) or any(
                box.contains(mx, my) for mx, my in marks)
            if not clash:
                break
            note.remove()
        else:
            note = ax.annotate(text, (x, y), textcoords="offset points",
                               xytext=candidates[0], fontsize=fontsize)
            box = Text.get_window_extent(note, renderer)
        placed.append(box)
        notes.append(note)
    return notes


def size_vs_accuracy(variants: List[dict], path: str) -> Optional[str]:
    """Scatter of .tflite size (KiB, log x) vs accuracy, one point a
    variant, each labelled with its name, size and accuracy; labels never
    overlap each other or the points.

    ``variants``: ``[{"name", "bytes", "accuracy"}]``.
    """
    rows = [v for v in variants if v.get("bytes") and
            v.get("accuracy") is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    xs = [v["bytes"] / 1024 for v in rows]
    ys = [100 * v["accuracy"] for v in rows]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (x, y) in enumerate(zip(xs, ys)):
        ax.scatter(x, y, s=60, color=colors[i % len(colors)], zorder=3)
    ax.set_xscale("log")
    lo, hi = min(xs), max(xs)
    ax.set_xlim(lo / 1.6, hi * 2.2)          # room for labels on the right
    spread = max(ys) - min(ys)
    pad = max(1.0, 0.35 * spread)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("model size (KiB, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("size vs accuracy (up and left is better)")
    ax.grid(True, which="both", alpha=0.3)
    place_labels(ax, list(zip(xs, ys)),
                 [f"{v['name']}\n{v['bytes'] / 1024:,.1f} KiB, "
                  f"{100 * v['accuracy']:.2f}%" for v in rows])
    return _save(fig, path)


def layer_sparsity(layers: List[dict], path: str) -> Optional[str]:
    """Bars of per-layer sparsity with unique-value counts on top.

    ``layers``: ``[{"layer", "sparsity", "unique"}]``.
    """
    if not layers:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(layers) + 2), 4))
    names = [l["layer"] for l in layers]
    bars = ax.bar(names, [100 * l["sparsity"] for l in layers],
                  color="#4c72b0")
    for bar, l in zip(bars, layers):
        ax.annotate(f"{l['unique']} uniq", (bar.get_x() + bar.get_width() / 2,
                                            bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("zero weights (%)")
    ax.set_xlabel("layer (model order)")
    ax.set_title("per-layer sparsity, with unique int8 values per layer")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def training_curves(history: List[dict], path: str) -> Optional[str]:
    """Loss and accuracy/metric per epoch, stages side by side."""
    stages = [h for h in history if h.get("history")]
    if not stages:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for h in stages:
        hist = h["history"]
        n = len(hist.get("loss", []))
        epochs = list(range(offset + 1, offset + n + 1))
        label = f"{h.get('stage', '')}:{h['kind']}"
        for key in ("loss", "val_loss"):
            if key in hist:
                axes[0].plot(epochs, hist[key], marker="o", markersize=3,
                             linestyle="-" if key == "loss" else "--",
                             label=f"{label} {key}")
        metric = next((k for k in ("val_accuracy", "accuracy", "val_mae",
                                   "mae") if k in hist), None)
        if metric:
            axes[1].plot(epochs, hist[metric], marker="o", markersize=3,
                         label=f"{label} {metric}")
        if offset:
            for ax in axes:
                ax.axvline(offset + 0.5, color="grey", alpha=0.4)
        offset += n
    axes[0].set_title("loss per epoch")
    axes[1].set_title("metric per epoch")
    for ax in axes:
        ax.set_xlabel("epoch (all stages)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def encoding_plans(plan: dict, path: str) -> Optional[str]:
    """Flash (x) vs measured arena (y) of each measured encoding plan, the
    shipped one marked, RAM/flash budgets as dashed lines.

    ``plan``: :meth:`converters.encodings.planner.Plan.to_dict` output
    (``measured``, ``chosen``, ``budget``).
    """
    rows = [m for m in plan.get("measured", []) if m.get("flash")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    kib = 1024.0
    for m in rows:
        chosen = m["label"] == plan.get("chosen")
        ax.scatter(m["flash"] / kib, m["arena_recommended"] / kib,
                   s=160 if chosen else 45, marker="*" if chosen else "o",
                   color="#c44e52" if chosen else "#4c72b0", zorder=3,
                   label="shipped" if chosen else None)
        ax.annotate(m["label"], (m["flash"] / kib, m["arena_recommended"] / kib),
                    textcoords="offset points", xytext=(6, 4), fontsize=7)
    budget = plan.get("budget", {})
    if budget.get("ram"):
        ax.axhline((budget["ram"] - budget.get("ram_reserved", 0)) / kib,
                   color="grey", linestyle="--", label="RAM budget")
    if budget.get("flash"):
        ax.axvline((budget["flash"] - budget.get("flash_reserved", 0)) / kib,
                   color="grey", linestyle=":", label="flash budget")
    ax.set_xlabel("model flash (KiB)")
    ax.set_ylabel("tensor arena, measured in TFLM (KiB)")
    ax.set_title("encoding plans: flash vs arena")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def write_all(report: dict, out_dir: str) -> dict:
    """Write every plot the report has data for; ``{kind: filename}``."""
    made = {}
    for key, fn, data in (
            ("size_vs_accuracy", size_vs_accuracy, report.get("variants")),
            ("layer_sparsity", layer_sparsity,
             report.get("tflite", {}).get("layers")),
            ("training_curves", training_curves, report.get("stages")),
            ("encoding_plans", encoding_plans, report.get("encodings"))):
        if data:
            path = fn(data, os.path.join(out_dir, f"{key}.png"))
            if path:
                made[key] = os.path.basename(path)
    return made
