"""Compare a converted model with the float Keras model on held-out data.

Classification (more than one output per sample): top-1 agreement with the
float model and, with labels, accuracy. Regression (one output): the max and
mean absolute error against the float model and, with targets, the error
against them.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: minimum top-1 agreement with the float model to pass
MIN_AGREEMENT = 0.98
#: regression passes when the max abs error is within this share of the
#: float output range
MAX_REL_ERROR = 0.05


def is_classifier(outputs: np.ndarray) -> bool:
    return outputs.ndim >= 2 and int(np.prod(outputs.shape[1:])) > 1


def compare(outputs: np.ndarray, reference: Optional[np.ndarray] = None,
            y: Optional[np.ndarray] = None) -> dict:
    """Metrics of ``outputs`` against float ``reference`` and labels ``y``."""
    out: dict = {"samples": int(len(outputs))}
    classifier = is_classifier(outputs)
    flat = outputs.reshape(len(outputs), -1)
    if classifier:
        pred = flat.argmax(-1)
        if reference is not None:
            ref = reference.reshape(len(reference), -1).argmax(-1)
            out["agreement"] = float(np.mean(pred == ref))
        labels = None if y is None else np.asarray(y).reshape(-1)
        if labels is not None and labels.size == pred.size:  # not targets
            out["accuracy"] = float(np.mean(pred == labels))
    else:
        if reference is not None:
            ref = reference.reshape(len(reference), -1)
            err = np.abs(flat - ref)
            span = float(np.ptp(ref)) or 1.0
            out["max_abs_error"] = float(err.max()) if err.size else 0.0
            out["mean_abs_error"] = float(err.mean()) if err.size else 0.0
            out["agreement"] = float(np.mean(err <= MAX_REL_ERROR * span))
        if y is not None:
            target = np.asarray(y, np.float32).reshape(len(flat), -1)
            out["mae"] = float(np.mean(np.abs(flat - target)))
    return out


def passed(metrics: dict) -> bool:
    return metrics.get("agreement", 1.0) >= MIN_AGREEMENT
