"""Which task a model output serves, and so which metric judges it.

The task is read from what the model says about itself, in this order: the
training loss, the output activation, the labels ``y`` that came with the
data, and last the output's shape. A user's ``--task`` overrides all of it.

Example:
    >>> infer(OutputSpec("probs", (10,), activation="softmax"))
    ('classification', 'output activation softmax')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: task name -> what it judges
TASKS: dict[str, str] = {
    "classification": "top-1 class per sample",
    "binary": "each value thresholded (sigmoid: 0.5)",
    "segmentation": "top-1 class per pixel (or per position)",
    "regression": "values, error relative to the output range",
    "reconstruction": "values shaped like an input, error relative to range",
    "embedding": "vectors, cosine similarity per sample",
}

_CATEGORICAL_LOSSES = ("categorical_crossentropy", "kl_divergence",
                       "kullback_leibler", "categorical_focal",
                       "categorical_hinge", "poisson")
_BINARY_LOSSES = ("binary_crossentropy", "binary_focal", "hinge",
                  "squared_hinge")
_VALUE_LOSSES = ("mean_squared", "mean_absolute", "mse", "mae", "mape",
                 "msle", "huber", "log_cosh", "logcosh")


@dataclasses.dataclass
class OutputSpec:
    """What is known about one model output.

    Attributes:
        name: the output's name (Keras output name or signature name).
        shape: per-sample shape (without the batch dimension).
        activation: ``softmax``, ``sigmoid``, ``l2_normalize``, ``linear``...
        loss: the training loss's name, when the model was compiled.
        lsb: one quantization step of the output in float units.
    """

    name: str
    shape: tuple
    activation: str | None = None
    loss: str | None = None
    lsb: float | None = None


def get(name: str) -> str:
    """``name`` if it is a task, else a ``ValueError`` listing the tasks."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return name


def _is_integral(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return True
    return bool(y.size) and bool(np.all(y == np.round(y)))


def _per_position(shape: tuple) -> bool:
    return len(shape) >= 2


def infer(spec: OutputSpec, *, input_shapes: Sequence[tuple] = (),
          y: np.ndarray | None = None) -> tuple[str, str]:
    """``(task, why)`` for one output.

    Args:
        spec: what the model says about the output.
        input_shapes: per-sample input shapes (an output shaped like an
            input is a reconstruction).
        y: this output's labels or targets, when the data has them.
    """
    shape = tuple(int(s) for s in spec.shape)
    classes = shape[-1] if shape else 1
    loss = (spec.loss or "").lower()
    act = (spec.activation or "").lower()
    # one value per sample is a regression even when the input is one value
    # (sine: x -> sin x); a reconstruction has several values
    like_input = int(np.prod(shape)) > 1 and any(tuple(s) == shape
                                                 for s in input_shapes)
    if loss:
        if any(k in loss for k in _BINARY_LOSSES):
            return "binary", f"loss {spec.loss}"
        if any(k in loss for k in _CATEGORICAL_LOSSES) and classes > 1:
            task = "segmentation" if _per_position(shape) else \
                "classification"
            return task, f"loss {spec.loss}"
        if "cosine" in loss:
            return "embedding", f"loss {spec.loss}"
        if any(k in loss for k in _VALUE_LOSSES):
            return ("reconstruction" if like_input else "regression",
                    f"loss {spec.loss}" + (", shaped like the input"
                                           if like_input else ""))
    if act in ("softmax", "log_softmax") and classes > 1:
        task = "segmentation" if _per_position(shape) else "classification"
        return task, f"output activation {act}"
    if act == "sigmoid":
        return "binary", "output activation sigmoid"
    if act in ("l2_normalize", "unit_normalization", "l2_normalization"):
        return "embedding", f"output activation {act}"
    if y is not None:
        y = np.asarray(y)
        if _is_integral(y) and classes > 1 and \
                tuple(y.shape[1:]) in (shape[:-1], shape[:-1] + (1,)):
            task = "segmentation" if _per_position(shape) else \
                "classification"
            return task, "integer labels y, one per " + (
                "position" if task == "segmentation" else "sample")
        if tuple(y.shape[1:]) == shape or y[0].size == int(np.prod(shape)):
            return ("reconstruction" if like_input else "regression",
                    "targets y shaped like the output")
    if like_input:
        return "reconstruction", "output shaped like the input"
    if classes == 1 or not shape:
        return "regression", "one value per sample"
    if _per_position(shape):
        return "segmentation", "several values per position"
    return "classification", "several values per sample (logits)"


def resolve(specs: Sequence[OutputSpec], *, user: dict[str, str] | None = None,
            input_shapes: Sequence[tuple] = (),
            labels: dict[str, np.ndarray] | None = None
            ) -> dict[str, tuple[str, str]]:
    """``{output name: (task, why)}``; ``user`` (from ``--task``) wins."""
    user = user or {}
    labels = labels or {}
    out = {}
    for spec in specs:
        if spec.name in user:
            out[spec.name] = (get(user[spec.name]), "set by --task")
        else:
            out[spec.name] = infer(spec, input_shapes=input_shapes,
                                   y=labels.get(spec.name))
    return out
