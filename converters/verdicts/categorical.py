"""Verdicts for outputs that pick a class: classification (per sample),
binary (per value, thresholded) and segmentation (per pixel or position).

All three reduce to predicted labels, the float model's labels and the
float model's margin (how far it was from choosing otherwise), one entry per
decision; the rules are the same:

* labels and a float reference: the accuracy drop decides (``<= tolerance``,
  or within sampling noise: :func:`noise_drop`), agreement with the float
  model is reported beside it;
* labels, no reference: ``min_accuracy`` decides; without it the model must
  beat chance (always predicting the most frequent label) by two standard
  errors; a real bar needs a reference or ``min_accuracy``;
* a reference, no labels: top-1 agreement, with a threshold that accounts
  for the float model's own margins: decisions whose margin is within the
  quantization band (a few output steps, at least 2% of the output range)
  may flip, so the threshold is ``1 - low_margin_share - tolerance``.
"""

from __future__ import annotations

import numpy as np

#: relative width of the band of "too close to call" float margins
MARGIN_BAND = 0.02
#: output quantization steps within which a decision may flip
MARGIN_STEPS = 2


def decisions(task: str, out: np.ndarray, *, logits: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, margins)`` flattened to one entry per decision.

    classification: argmax over the sample; segmentation: argmax over the
    last axis (one per pixel); binary: each value against 0.5 (0 for
    ``logits``).
    """
    n = out.shape[0]
    if task == "binary":
        flat = out.reshape(n, -1).astype(np.float64)
        cut = 0.0 if logits else 0.5
        return (flat > cut).astype(np.int64).ravel(), np.abs(flat - cut).ravel()
    if task == "segmentation":
        flat = out.reshape(-1, out.shape[-1]).astype(np.float64)
    else:
        flat = out.reshape(n, -1).astype(np.float64)
    if flat.shape[1] == 1:  # one column: thresholded like binary
        return decisions("binary", flat, logits=logits)
    top2 = np.partition(flat, -2, axis=1)[:, -2:]
    return flat.argmax(axis=1), top2[:, 1] - top2[:, 0]


def band(reference: np.ndarray, lsb: float | None) -> float:
    """Margins below this may flip under quantization: the larger of
    :data:`MARGIN_STEPS` output steps and :data:`MARGIN_BAND` of the float
    output's range (both fixed before the quantized model is looked at)."""
    span = float(np.ptp(reference)) if reference.size else 0.0
    return max(MARGIN_STEPS * (lsb or 0.0), MARGIN_BAND * span)


def noise_drop(changed: int, n: int, level: float = 0.05) -> float:
    """The largest accuracy drop that ``changed`` decisions changing sides
    (right to wrong or wrong to right) out of ``n`` can show by chance.

    Under "quantization does not hurt", each change is a fair coin (exact
    McNemar test): a net loss is significant once losing at least that many
    of the ``changed`` has probability at most ``level``. Returns the
    largest net loss below that, as a share of ``n`` (0 when nothing
    changed)."""
    if changed <= 0 or n <= 0:
        return 0.0
    from math import exp, floor, lgamma, log, sqrt
    if changed > 10_000:   # normal approximation, one-sided
        worst = floor(changed / 2 + 1.6449 * sqrt(changed) / 2)
    else:
        tail, worst, half = 0.0, changed, changed * log(2.0)
        for lost in range(changed, -1, -1):  # P(X >= lost), X ~ B(c, 1/2)
            tail += exp(lgamma(changed + 1) - lgamma(lost + 1)
                        - lgamma(changed - lost + 1) - half)
            if tail > level:
                break
            worst = lost - 1
    net = max(0, worst - (changed - worst))
    return net / n


def judge(task: str, pred: np.ndarray, *, ref: np.ndarray | None,
          ref_margin: np.ndarray | None, margin_band: float,
          y: np.ndarray | None, tolerance: float,
          min_accuracy: float | None, against_name: str = "float model"
          ) -> dict:
    """The verdict fields for one categorical output (see module doc)."""
    unit = "pixels" if task == "segmentation" else "samples"
    details: dict = {"decisions": int(pred.size)}
    if ref is not None:
        details["agreement"] = float(np.mean(pred == ref))
    if y is not None:
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if y.size != pred.size:
            raise ValueError(f"labels y have {y.size} values but the output "
                             f"gives {pred.size} decisions ({unit})")
        acc = float(np.mean(pred == y))
        details["accuracy"] = acc
        if ref is not None:
            ref_acc = float(np.mean(ref == y))
            details[f"{_key(against_name)}_accuracy"] = ref_acc
            drop = ref_acc - acc
            lost = int(np.sum((ref == y) & (pred != y)))
            gained = int(np.sum((ref != y) & (pred == y)))
            noise = noise_drop(lost + gained, pred.size)
            details.update(lost=lost, gained=gained, noise_drop=noise)
            allowed = (f"at most {tolerance} allowed" if noise <= tolerance
                       else f"at most {noise:.4f} allowed: {lost + gained} "
                       f"{unit} changed sides of {pred.size}, and a net loss "
                       f"this small is within sampling noise (McNemar, 95%)")
            fields = dict(
                metric="accuracy_drop", value=drop,
                threshold=max(tolerance, noise),
                higher_is_better=False, against=f"labels and {against_name}",
                why=(f"labels given: accuracy {acc:.4f} vs {against_name} "
                     f"{ref_acc:.4f} (drop {drop:+.4f}, {allowed}); "
                     f"agreement {details['agreement']:.4f} reported beside "
                     f"it"))
            if min_accuracy is not None and acc < min_accuracy:
                fields.update(
                    metric="accuracy", value=acc, threshold=min_accuracy,
                    higher_is_better=True,
                    why=f"accuracy {acc:.4f} is below --min-accuracy "
                        f"{min_accuracy}")
            return {**fields, "details": details}
        if min_accuracy is not None:
            return dict(metric="accuracy", value=acc, threshold=min_accuracy,
                        higher_is_better=True, against="labels",
                        details=details,
                        why=f"labels, no float reference: accuracy {acc:.4f}"
                            f" against --min-accuracy {min_accuracy}")
        counts = np.bincount(y - y.min()) if y.size else np.zeros(1)
        chance = float(counts.max() / max(1, y.size))
        bar = min(1.0, chance + 2 * np.sqrt(chance * (1 - chance)
                                            / max(1, y.size)))
        details["chance"] = chance
        return dict(metric="accuracy", value=acc, threshold=bar,
                    higher_is_better=True, against="chance",
                    details=details,
                    why=(f"labels but no float reference and no "
                         f"--min-accuracy: accuracy {acc:.4f} must beat "
                         f"always predicting the most frequent label "
                         f"({chance:.4f}) by two standard errors; give "
                         f"--reference FLOAT_MODEL or --min-accuracy for a "
                         f"real bar"))
    if ref is None:
        return dict(metric=None, value=None, threshold=None,
                    higher_is_better=True, against="nothing",
                    details=details,
                    why="no labels and no reference: only checked that the "
                        "model runs; give y or --reference FLOAT_MODEL")
    agreement = details["agreement"]
    low = ref_margin <= margin_band
    low_share = float(np.mean(low)) if low.size else 0.0
    confident = ~low
    details.update(
        low_margin_share=low_share, margin_band=float(margin_band),
        agreement_confident=float(np.mean(pred[confident] == ref[confident]))
        if confident.any() else None)
    threshold = max(0.0, 1.0 - low_share - tolerance)
    return dict(metric="agreement", value=agreement, threshold=threshold,
                higher_is_better=True, against=against_name, details=details,
                why=(f"no labels: top-1 agreement with {_the(against_name)} "
                     f"{agreement:.4f} must reach 1 - {tolerance} - the "
                     f"share of {unit} whose {against_name} margin is under "
                     f"{margin_band:.3g} ({low_share:.4f}), i.e. "
                     f"{threshold:.4f}"))


def _key(name: str) -> str:
    return name.replace(" model", "").replace(" ", "_").lower()


def _the(name: str) -> str:
    """``"the float model"``, but ``"LiteRT"``."""
    return f"the {name}" if name.endswith("model") else name
