"""Verdicts for outputs that are values: regression, reconstruction and
embeddings.

* a float reference: regression and reconstruction are judged by the error
  relative to the reference's range (99th percentile of the absolute error
  over all values, divided by the range; ``<= tolerance``), with the max and
  mean error and the SNR beside it; embeddings by the mean cosine similarity
  per sample (``>= 1 - tolerance``);
* targets ``y`` and a reference: the growth of the mean absolute error over
  the reference's, as a share of the range of ``y``, decides (MSE beside);
* targets, no reference: the model must beat predicting the mean of ``y``
  (R^2 > 0); a real bar needs a reference.
"""

from __future__ import annotations

import numpy as np

from converters.verdicts.verdict import DEFAULT_TARGET_TOLERANCE

#: percentile of the absolute error that decides (robust to one outlier)
PERCENTILE = 99.0


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64).reshape(len(a), -1)


def error_stats(out: np.ndarray, ref: np.ndarray) -> dict:
    """Error of ``out`` against ``ref``: absolute, relative to the range,
    SNR (dB) and the per-sample cosine similarity."""
    a, b = _flat(out), _flat(ref)
    err = np.abs(a - b)
    span = float(np.ptp(b)) if b.size else 0.0
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(b ** 2))
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.where(
        norms > 0, norms, 1.0), 1.0)
    p = float(np.percentile(err, PERCENTILE)) if err.size else 0.0
    return {
        "range": span,
        "max_abs_error": float(err.max()) if err.size else 0.0,
        "mean_abs_error": float(err.mean()) if err.size else 0.0,
        f"p{PERCENTILE:g}_abs_error": p,
        "relative_error": p / span if span > 0 else (0.0 if p == 0 else
                                                     1.0),
        "max_relative_error": (float(err.max()) / span if span > 0 else 0.0)
        if err.size else 0.0,
        # None when there is no noise (identical) or no signal
        "snr_db": float(10 * np.log10(signal / noise))
        if noise > 0 and signal > 0 else None,
        "cosine_mean": float(np.mean(cos)) if cos.size else 1.0,
        "cosine_min": float(np.min(cos)) if cos.size else 1.0,
    }


def target_stats(out: np.ndarray, y: np.ndarray) -> dict:
    a = _flat(out)
    t = np.asarray(y, np.float64).reshape(a.shape[0], -1)
    if t.shape != a.shape:
        raise ValueError(f"targets y have {t.shape[1]} values per sample but "
                         f"the output has {a.shape[1]}")
    return {"mae": float(np.mean(np.abs(a - t))),
            "mse": float(np.mean((a - t) ** 2))}


def judge(task: str, out: np.ndarray, *, ref: np.ndarray | None,
          y: np.ndarray | None, tolerance: float | None,
          tolerance_default: float, against_name: str = "float model"
          ) -> dict:
    """The verdict fields for one value output (see module doc)."""
    details: dict = {}
    if ref is not None:
        details.update(error_stats(out, ref))
    if y is not None:
        mine = target_stats(out, y)
        details.update(mine)
        y_span = float(np.ptp(np.asarray(y, np.float64))) or 1.0
        if ref is not None:
            theirs = target_stats(ref, y)
            key = against_name.replace(" model", "").replace(" ", "_")
            details.update({f"{key}_mae": theirs["mae"],
                            f"{key}_mse": theirs["mse"]})
            tol = DEFAULT_TARGET_TOLERANCE if tolerance is None else tolerance
            growth = (mine["mae"] - theirs["mae"]) / y_span
            details["mae_growth"] = growth
            return dict(
                metric="mae_growth", value=growth, threshold=tol,
                higher_is_better=False, against=f"targets and {against_name}",
                details=details,
                why=(f"targets y given: mean absolute error {mine['mae']:.4g}"
                     f" vs {against_name} {theirs['mae']:.4g}; the growth "
                     f"({growth:+.4f} of the range of y, {y_span:.4g}) may "
                     f"be at most {tol}; error vs {_the(against_name)} "
                     f"{details['relative_error']:.4f} of its range beside"))
        var = float(np.var(np.asarray(y, np.float64)))
        r2 = 1.0 - mine["mse"] / var if var > 0 else float("-inf")
        details["r2"] = r2
        return dict(
            metric="r2", value=r2, threshold=0.0, higher_is_better=True,
            against="mean of y", details=details,
            why=(f"targets but no float reference: R^2 {r2:.4f} must beat "
                 f"predicting the mean of y (R^2 > 0); give --reference "
                 f"FLOAT_MODEL for a real bar"))
    if ref is None:
        return dict(metric=None, value=None, threshold=None,
                    higher_is_better=True, against="nothing",
                    details=details,
                    why="no targets and no reference: only checked that the "
                        "model runs; give y or --reference FLOAT_MODEL")
    tol = tolerance_default if tolerance is None else tolerance
    per_sample = np.abs(_flat(out) - _flat(ref)).max(axis=1) \
        if out.size else np.zeros(0)
    details["within_tolerance"] = float(np.mean(
        per_sample <= tol * details["range"])) if per_sample.size else 1.0
    if task == "embedding":
        cos = details["cosine_mean"]
        return dict(
            metric="cosine_similarity", value=cos, threshold=1.0 - tol,
            higher_is_better=True, against=against_name, details=details,
            why=(f"embedding: mean cosine similarity with {_the(against_name)} "
                 f"{cos:.5f} must reach {1.0 - tol:.4f} (worst sample "
                 f"{details['cosine_min']:.4f})"))
    rel = details["relative_error"]
    snr = details["snr_db"]
    return dict(
        metric="relative_error", value=rel, threshold=tol,
        higher_is_better=False, against=against_name, details=details,
        why=(f"{task}: the {PERCENTILE:g}th-percentile absolute error vs "
             f"{_the(against_name)} is {rel:.4f} of its output range "
             f"({details['range']:.4g}), at most {tol} allowed; max "
             f"{details['max_relative_error']:.4f} of range"
             + (f", SNR {snr:.1f} dB" if snr is not None else "")))


def _the(name: str) -> str:
    """``"the float model"``, but ``"LiteRT"``."""
    return f"the {name}" if name.endswith("model") else name
