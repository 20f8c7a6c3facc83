"""Automatic mixed precision: weight bits per layer, chosen from measured
sensitivity under a flash or accuracy budget.

Per layer the choices are 8-bit weights (plain int8), 4 and 2 bits (the
kernel holds 16 or 4 values, stored by TFLM's LUT compression as 4- or
2-bit indices into a value table) and binary (2 values, 1-bit indices). The
model stays a stock full-integer int8 model: LiteRT runs it as is, TFLM
decodes the LUT tensors (``DECODE``) before their consumer.

:func:`analyze` replaces one layer's kernel at a time by its k-means values
(16, 4, 2) without training and measures the accuracy drop; :func:`choose`
picks bits per layer with the least predicted drop under ``max_bytes``
(flash of the LUT-compressed model) or the fewest bytes under
``max_accuracy_drop``, and checks the byte estimate by converting the
untrained plan; :meth:`Plan.recipe` writes the choice as a recipe (one
``cluster`` stage with ``per_layer`` counts that fine-tunes the centroids),
which ``tfcompress optimize --target micro`` applies and validates in LiteRT
and TFLM. :func:`plot` draws size vs accuracy: every uniform choice and the
chosen mix.

Example:
    >>> sens = analyze(model, x_val, y_val)
    >>> plan = choose(model, sens, x_val, y_val, max_bytes=20_000)
    >>> write(sens, plan, "build/mixed")     # json, png, recipe.yaml
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional

import numpy as np

from converters.conversion.signature import as_input
from tfcompress.analysis import sensitivity as sens_mod

#: weight bits -> values per kernel (None: plain int8)
CLUSTERS = {8: None, 4: 16, 2: 4, 1: 2}
BITS = tuple(CLUSTERS)
#: LUT bookkeeping per compressed tensor (DECODE header) and per model
#: (re-serialization, DECODE ops), measured on digits: about 1.5 KB
_HEADER = 16
_MODEL_OVERHEAD = 1536


@dataclasses.dataclass
class Sensitivity:
    """Per layer ``{"layer", "weights", "channels", "drop": {bits: drop}}``
    and the float ``baseline`` accuracy."""

    baseline: float
    layers: List[dict]

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "layers": [
            {**r, "drop": {str(b): d for b, d in r["drop"].items()}}
            for r in self.layers]}


@dataclasses.dataclass
class Plan:
    """Bits per layer and what they cost."""

    bits: Dict[str, int]
    estimated_bytes: int
    predicted_drop: float
    int8_bytes: int
    target: dict
    uniform: Dict[int, dict] = dataclasses.field(default_factory=dict)
    measured_bytes: Optional[int] = None    # untrained plan, LUT-compressed
    measured_drop: Optional[float] = None   # untrained plan, all layers

    def recipe(self, epochs: int = 3, learning_rate: float = 1e-4) -> dict:
        """A recipe applying the plan: one cluster stage, per-layer counts,
        8-bit layers skipped (PTQ keeps them int8)."""
        counts = {n: CLUSTERS[b] for n, b in self.bits.items() if b < 8}
        keep = sorted(n for n, b in self.bits.items() if b >= 8)
        if not counts:
            raise ValueError("the plan keeps every layer at 8 bits: there is "
                             "nothing to fine-tune; convert with PTQ")
        return {"stages": [{"cluster": {
            "clusters": max(counts.values()), "per_layer": counts,
            "skip": keep, "init": "kmeans++", "epochs": int(epochs),
            "learning_rate": float(learning_rate)}}], "fit": {}}

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["uniform"] = {str(b): v for b, v in self.uniform.items()}
        return out


def layer_bytes(weights: int, channels: int, bits: int) -> int:
    """Flash bytes of one int8 kernel at ``bits`` (LUT indices, a header
    and one value table per output channel), or ``weights`` at 8 bits."""
    if bits >= 8:
        return int(weights)
    return int(math.ceil(weights * bits / 8) + _HEADER
               + channels * CLUSTERS[bits])


def analyze(model, x: np.ndarray, y: np.ndarray, *,
            bits=(4, 2, 1), batch_size: int = 256) -> Sensitivity:
    """Accuracy drop of each layer alone at each of ``bits``, untrained."""
    x = as_input(x)
    base = sens_mod._accuracy(model, x, y, None, batch_size)  # noqa: SLF001
    rows = []
    for layer, _, allowed in sens_mod._candidates(model):  # noqa: SLF001
        kernels = sens_mod._kernels(layer)  # noqa: SLF001
        original = [w.numpy() for w in kernels]
        row = {"layer": layer.name, "class": type(layer).__name__,
               "weights": int(sum(w.size for w in original)),
               "channels": int(sum(w.shape[-1] for w in original)),
               "drop": {}}
        for b in bits:
            if CLUSTERS[b] not in allowed:
                continue
            for var, w in zip(kernels, original):
                var.assign(sens_mod.kmeans_1d(w, CLUSTERS[b]))
            row["drop"][b] = round(base - sens_mod._accuracy(  # noqa: SLF001
                model, x, y, None, batch_size), 6)
            for var, w in zip(kernels, original):
                var.assign(w)
        rows.append(row)
    return Sensitivity(base, rows)


def apply_bits(model, bits: Dict[str, int]):
    """A copy of ``model`` whose kernels hold k-means values per ``bits``."""
    return sens_mod.apply_settings(model, {
        name: {"sparsity": 0.0, "clusters": CLUSTERS[b]}
        for name, b in bits.items() if b < 8})


def lut_flash(model, x) -> int:
    """Flash bytes of ``model``'s int8 conversion after LUT compression
    (the plain int8 size when nothing qualifies)."""
    from converters.encodings import lut
    tflite = sens_mod._int8_tflite(model, x)  # noqa: SLF001
    small, _ = lut.compress_clustered(tflite, verify=False)
    return len(small if small is not None else tflite)


def _estimate(rows: Dict[str, dict], bits: Dict[str, int], base: int) -> int:
    lut = any(b < 8 for b in bits.values())
    return base + (_MODEL_OVERHEAD if lut else 0) + sum(
        layer_bytes(rows[n]["weights"], rows[n]["channels"], b)
        for n, b in bits.items())


def _drop(rows, bits) -> float:
    return sum(max(0.0, rows[n]["drop"].get(b, 0.0)) if b < 8 else 0.0
               for n, b in bits.items())


def _greedy(rows, base, max_bytes, max_drop) -> Dict[str, int]:
    """From all-8-bit, take the step (one layer one choice lower) with the
    most bytes saved per point of predicted drop, until ``max_bytes`` is
    met or no step stays within ``max_drop``."""
    bits = {n: 8 for n in rows}
    while True:
        size, drop = _estimate(rows, bits, base), _drop(rows, bits)
        if max_bytes is not None and size <= max_bytes:
            return bits
        best, best_ratio = None, -1.0
        for n in rows:
            for b in rows[n]["drop"]:
                if b >= bits[n]:
                    continue
                trial = {**bits, n: b}
                saved = size - _estimate(rows, trial, base)
                cost = max(_drop(rows, trial) - drop, 0.0)
                if saved <= 0 or (max_drop is not None
                                  and drop + cost > max_drop + 1e-12):
                    continue
                ratio = saved / (cost + 1e-4)
                if ratio > best_ratio:
                    best, best_ratio = trial, ratio
        if best is None:
            return bits
        bits = best


def choose(model, sens: Sensitivity, x: np.ndarray, y: np.ndarray, *,
           max_bytes: Optional[int] = None,
           max_accuracy_drop: Optional[float] = None,
           margin: float = 0.03) -> Plan:
    """Bits per layer that meet ``max_bytes`` (flash of the LUT-compressed
    int8 model) or ``max_accuracy_drop`` (summed per-layer drops, a
    fraction). The byte estimate is checked on the converted, untrained
    plan and the target tightened when over. Also measures every uniform
    choice (all layers at 8, 4, 2, 1 bits) for :func:`plot`.

    Raises:
        ValueError: no target, two targets, or ``max_bytes`` cannot be met.
    """
    if (max_bytes is None) == (max_accuracy_drop is None):
        raise ValueError("choose: give exactly one of max_bytes (flash bytes "
                         "of the LUT-compressed int8 model) or "
                         "max_accuracy_drop (a fraction)")
    x = as_input(x)
    rows = {r["layer"]: r for r in sens.layers}
    int8 = len(sens_mod._int8_tflite(model, x))  # noqa: SLF001
    base = int8 - sum(r["weights"] for r in rows.values())
    uniform = {}
    for b in BITS:
        bits = {n: b if b in rows[n]["drop"] or b == 8 else 8 for n in rows}
        trial = apply_bits(model, bits)
        uniform[b] = {"bits": bits, "bytes": lut_flash(trial, x),
                      "accuracy": sens_mod._accuracy(  # noqa: SLF001
                          trial, x, y, None, 256)}
    budget = None if max_bytes is None else int(max_bytes * (1 - margin))
    for _ in range(4):
        bits = _greedy(rows, base, budget, max_accuracy_drop)
        trial = apply_bits(model, bits)
        measured = lut_flash(trial, x)
        if max_bytes is None or measured <= max_bytes:
            break
        budget -= measured - max_bytes
    if max_bytes is not None and measured > max_bytes:
        raise ValueError(
            f"choose: max_bytes={max_bytes} cannot be met: the closest plan "
            f"is {measured} flash bytes (all-binary: {uniform[1]['bytes']}); "
            "raise max_bytes")
    accuracy = sens_mod._accuracy(trial, x, y, None, 256)  # noqa: SLF001
    return Plan(bits, _estimate(rows, bits, base),
                round(_drop(rows, bits), 6), int8,
                {"max_bytes": max_bytes,
                 "max_accuracy_drop": max_accuracy_drop}, uniform,
                measured, round(sens.baseline - accuracy, 6))


def plot(sens: Sensitivity, plan: Plan, path: str,
         trained: Optional[dict] = None) -> Optional[str]:
    """PNG: flash bytes vs accuracy of the uniform choices and the chosen
    mix (untrained, and ``trained`` = ``{"bytes", "accuracy"}`` after
    fine-tuning when given)."""
    from converters.reporting.plots import _plt, _save
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [plan.uniform[b]["bytes"] for b in BITS if b in plan.uniform]
    ys = [100 * plan.uniform[b]["accuracy"] for b in BITS if b in plan.uniform]
    ax.plot(xs, ys, "o--", color="gray", label="uniform (untrained)")
    for b, xv, yv in zip([b for b in BITS if b in plan.uniform], xs, ys):
        ax.annotate(f"{b}-bit" if b > 1 else "binary", (xv, yv),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([plan.measured_bytes],
            [100 * (sens.baseline - (plan.measured_drop or 0.0))], "s",
            color="tab:blue", label="chosen mix (untrained)")
    if trained:
        ax.plot([trained["bytes"]], [100 * trained["accuracy"]], "*",
                markersize=12, color="tab:red",
                label="chosen mix (fine-tuned, TFLM)")
    if plan.target.get("max_bytes"):
        ax.axvline(plan.target["max_bytes"], color="tab:green", lw=1,
                   label="byte budget")
    ax.axhline(100 * sens.baseline, color="black", lw=0.8, ls=":",
               label="float")
    ax.set_xlabel("flash bytes (int8 + TFLM LUT)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("weight bits per layer: size vs accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write(sens: Sensitivity, plan: Plan, out_dir: str, *, epochs: int = 3,
          trained: Optional[dict] = None) -> Dict[str, str]:
    """Write ``mixed_precision.json``, ``mixed_precision.png`` and
    ``recipe.yaml`` into ``out_dir``; return their paths."""
    import yaml
    from converters.files import atomic_write
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "mixed_precision.json"),
             "recipe": os.path.join(out_dir, "recipe.yaml")}
    atomic_write(paths["json"], json.dumps(
        {"sensitivity": sens.to_dict(), "plan": plan.to_dict(),
         "trained": trained}, indent=2))
    atomic_write(paths["recipe"], yaml.safe_dump(plan.recipe(epochs),
                                                 sort_keys=False))
    png = plot(sens, plan, os.path.join(out_dir, "mixed_precision.png"),
               trained)
    if png:
        paths["png"] = png
    return paths
