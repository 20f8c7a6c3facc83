"""What ``optimize`` trains against.

A classifier trains on its integer labels with the recipe's loss. A model
whose targets are not class ids (regression, reconstruction, segmentation
masks of a model compiled that way) trains with its own compiled loss, or
mean squared error when it was saved uncompiled. Without targets in
DATA.npz the model trains against the float model's own outputs
(self-distillation), with mean squared error.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

__all__ = ["training_targets"]

_CLASSIFICATION = ("sparse_categorical_crossentropy",
                   "categorical_crossentropy", "binary_crossentropy")


def _class_ids(y, model) -> bool:
    """``y`` are class ids of a model with one vector output."""
    if y is None or isinstance(y, dict) or len(model.outputs) != 1:
        return False
    out = tuple(model.outputs[0].shape)
    return np.issubdtype(np.asarray(y).dtype, np.integer) and len(out) >= 2


def _own_loss(model) -> Optional[object]:
    loss = getattr(model, "loss", None)
    return loss if loss not in (None, "") else None


def training_targets(model, x, y, recipe, *, log: Optional[Callable] = None,
                     name: str = "model"):
    """``(y, recipe)`` to train ``model`` on: ``y`` as given or the float
    model's outputs, and the recipe with a loss that fits them."""
    fit = dict(recipe.fit)
    loss = fit.get("loss")
    user_loss = "loss" in getattr(recipe, "user_fit", {})
    if y is None:
        y = model.predict(x, verbose=0, batch_size=256)
        if isinstance(y, list):
            from converters.conversion.signature import output_names
            y = dict(zip(output_names(model), y))
        fit.update(loss="mse", from_logits=None)
        _say(log, f"[{name}] no targets in the data: training against the "
                  "float model's outputs (mean squared error)")
    elif not _class_ids(y, model) and not user_loss and (
            loss is None or str(loss) in _CLASSIFICATION):
        own = _own_loss(model)
        fit.update(loss=None if own is not None else "mse", from_logits=None)
        _say(log, f"[{name}] targets are not class ids: training with the "
                  + ("model's own loss" if own is not None else
                     "mean squared error"))
    if fit == recipe.fit:
        return y, recipe
    return y, dataclasses.replace(recipe, fit=fit)


def _say(log, msg: str) -> None:
    if log is not None:
        log(msg)

