"""Which rows of the user's data train each stage and which validate, and
what the report says about it.

``tfcompress optimize MODEL --data DATA.npz`` is, as a rule, given the data
the float model was trained on. A holdout carved from it is then data the
float model has seen (often memorised: 100% accuracy), and a compressed
model that never trained on those rows looks worse than it is. So, without
``--val``, every stage trains on all of ``DATA.npz`` (recipe
``fit.all_data``, the default) and the seeded holdout restores the best
epoch and carries the verdict: the float model, its int8 PTQ and the
compressed model are compared on rows all three have seen, which measures
how much of the float model's fit the compression kept. Generalization to
unseen data needs ``--val``: then all of ``DATA.npz`` trains and the
separate data validates. ``fit.all_data: false`` keeps the holdout out of
training (``fit.final_all_data`` still lets the last stage see it).

Example:
    >>> split = plan(x, y, None, 0.2, rec.fit)
    >>> compress(model, split.train, split.val, rec,
    ...          final_train_data=split.final)
    >>> report["data"] = split.info
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

from tfcompress.pipeline import data as datasets


@dataclasses.dataclass
class Split:
    """Training and validation data of one ``optimize`` run."""

    train: Tuple[Any, Any]
    val: Tuple[Any, Any]
    final: Optional[Tuple[Any, Any]]  # the last stage's data, if different
    info: dict                        # report.json ``data``

    @property
    def summary(self) -> str:
        """One phrase for the progress line."""
        head = (f"{self.info['trained']} samples train, "
                f"{self.info['validated']} validate")
        if self.info.get("holdout_trained"):
            return head + (" (a seeded holdout that trains too; --val for "
                           "unseen data)")
        return head + f" ({self.info['validation']})"


def _rows(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def plan(x, y, val, holdout: float, fit: dict) -> Split:
    """The rows each stage trains and validates on.

    Args:
        x, y: the user's data (``--data``); arrays, or dicts by name.
        val: ``(x, y)`` of separate validation data (``--val``) or ``None``.
        holdout: the seeded share of ``(x, y)`` that validates without
            ``val``.
        fit: the recipe's ``fit`` section (``all_data``,
            ``final_all_data``).
    """
    n = _rows(x)
    if val is not None:
        return Split((x, y), val, None, {
            "trained": n, "validated": _rows(val[0]),
            "validation": "separate validation data (--val)",
            "holdout_trained": False})
    train, held = datasets.split(x, y, holdout)
    source = f"seeded {holdout:.0%} holdout of the data"
    if fit.get("all_data", True):
        return Split((x, y), held, None, {
            "trained": n, "validated": _rows(held[0]),
            "holdout_trained": True,
            "validation": (
                f"{source}; it trains too, as it trained the float model if "
                "this is its training data, so the verdict compares the "
                "models on rows all of them saw (fit.all_data); pass --val "
                "for a verdict on unseen data")})
    info = {"trained": _rows(train[0]), "validated": _rows(held[0]),
            "validation": source, "holdout_trained": False}
    final = None
    if fit.get("final_all_data"):
        final = (x, y)
        info["final_stage_trained"] = n
        info["validation"] += (f" (the last stage trains on all {n} "
                               "samples, holdout included)")
    return Split(train, held, final, info)
