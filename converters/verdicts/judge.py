"""Judge every output of a model by its task, by name.

Example:
    >>> verdicts = judge({"probs": q}, reference={"probs": f},
    ...                  labels={"probs": y},
    ...                  tasks={"probs": ("classification", "loss ...")})
    >>> verdicts[0].metric, verdicts[0].passed
    ('accuracy_drop', True)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from converters.verdicts import categorical, values
from converters.verdicts.verdict import DEFAULT_TOLERANCE, Verdict, check

_CATEGORICAL = ("classification", "binary", "segmentation")


def constant(a: np.ndarray) -> bool:
    """Every sample gives the same output (needs two samples or more)."""
    a = np.asarray(a)
    return a.shape[0] >= 2 and bool(np.all(a == a[:1]))


def _constant_verdict(name: str, task: str, source: str, arr: np.ndarray,
                      whose: str) -> Verdict:
    first = np.asarray(arr[0]).ravel()
    shown = ", ".join(f"{v:.4g}" for v in first[:4]) + (
        ", ..." if first.size > 4 else "")
    return Verdict(
        output=name, task=task, task_source=source, against="nothing",
        metric="distinct_outputs", value=1.0, threshold=2.0,
        higher_is_better=True, passed=False,
        why=(f"the {whose} gives the same output {name!r} ([{shown}]) for all "
             f"{arr.shape[0]} samples: it is untrained, its inputs differ "
             f"from what it was trained on (scaling), or a layer saturates; "
             f"comparing with it would prove nothing"),
        flags=[f"constant_{'reference' if whose != 'model' else 'output'}"])


def _logits(task: str, arr: np.ndarray) -> bool:
    return task == "binary" and arr.size > 0 and (
        float(arr.min()) < 0.0 or float(arr.max()) > 1.0)


def judge_one(name: str, out: np.ndarray, *, task: str, task_source: str = "",
              reference: np.ndarray | None = None,
              labels: np.ndarray | None = None,
              tolerance: float | None = None,
              min_accuracy: float | None = None, lsb: float | None = None,
              against: str = "float model") -> Verdict:
    """The verdict for one output; see :mod:`categorical` and :mod:`values`
    for the rules of each task."""
    out = np.asarray(out)
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape[0] != out.shape[0] or \
                reference.size != out.size:
            raise ValueError(
                f"output {name!r}: the {against} gives shape "
                f"{list(reference.shape)} but the model {list(out.shape)}")
        reference = reference.reshape(out.shape)
        if constant(reference):
            return _constant_verdict(name, task, task_source, reference,
                                     against)
    elif constant(out):
        return _constant_verdict(name, task, task_source, out, "model")
    if task in _CATEGORICAL:
        if labels is not None and task != "binary" and out.shape[-1] > 1 \
                and np.shape(labels) == out.shape:  # one-hot labels
            labels = np.asarray(labels).argmax(-1)
        logits = _logits(task, reference if reference is not None else out)
        pred, _ = categorical.decisions(task, out, logits=logits)
        ref = margin = None
        width = 0.0
        if reference is not None:
            ref, margin = categorical.decisions(task, reference,
                                                logits=logits)
            width = categorical.band(reference, lsb)
        fields = categorical.judge(
            task, pred, ref=ref, ref_margin=margin, margin_band=width,
            y=labels, tolerance=DEFAULT_TOLERANCE[task] if tolerance is None
            else tolerance, min_accuracy=min_accuracy, against_name=against)
    else:
        fields = values.judge(task, out, ref=reference, y=labels,
                              tolerance=tolerance,
                              tolerance_default=DEFAULT_TOLERANCE[task],
                              against_name=against)
        if min_accuracy is not None:
            fields["details"]["min_accuracy"] = "ignored: not a classifier"
    metric = fields.pop("metric")
    passed = metric is None or check(metric, fields["value"],
                                     fields["threshold"],
                                     higher_is_better=fields[
                                         "higher_is_better"])
    return Verdict(output=name, task=task, task_source=task_source,
                   metric=metric, passed=passed, **fields)


def judge(outputs: Mapping[str, np.ndarray], *,
          tasks: Mapping[str, tuple[str, str]],
          reference: Mapping[str, np.ndarray] | None = None,
          labels: Mapping[str, np.ndarray] | None = None,
          tolerances: Mapping[str, float] | None = None,
          min_accuracy: float | None = None,
          lsb: Mapping[str, float | None] | None = None,
          against: str = "float model") -> list[Verdict]:
    """One :class:`Verdict` per output, matched by name.

    Args:
        outputs: the model under test, ``{name: [N, ...] float array}``.
        tasks: ``{name: (task, why)}`` (see :func:`tasks.resolve`).
        reference: the float model (or the other runtime), same names.
        labels: ``{name: y}`` for the outputs that have labels or targets.
        tolerances: ``{name: tolerance}`` overriding the task's default.
        min_accuracy: classification bar when there is no reference.
        lsb: ``{name: one output step}`` (quantized outputs).
        against: what ``reference`` is, for the report.
    """
    reference, labels = reference or {}, labels or {}
    tolerances, lsb = tolerances or {}, lsb or {}
    missing = [n for n in reference if n not in outputs]
    if missing:
        raise ValueError(f"the {against} has output(s) {missing} the model "
                         f"lacks; the model's outputs: {list(outputs)}")
    return [judge_one(name, out, task=tasks[name][0],
                      task_source=tasks[name][1],
                      reference=reference.get(name), labels=labels.get(name),
                      tolerance=tolerances.get(name),
                      min_accuracy=min_accuracy, lsb=lsb.get(name),
                      against=against)
            for name, out in outputs.items()]


def per_output(values: Mapping[str, object] | object, names: list[str],
               what: str) -> dict:
    """Expand a setting given once or per output name (``--task`` and
    ``--tolerance`` values): ``{"": v}`` applies to every output."""
    if not isinstance(values, Mapping):
        return {n: values for n in names} if values is not None else {}
    out = {}
    for key, value in values.items():
        if key in ("", None, "*"):
            out.update({n: value for n in names if n not in out})
        elif key in names:
            out[key] = value
        else:
            raise ValueError(f"{what} names output {key!r}, but the model's "
                             f"outputs are {names}")
    return out
