"""One output's verdict: which metric decided, its threshold, value and why."""

from __future__ import annotations

import dataclasses
from typing import Any

#: default tolerance per task: the deciding metric's allowed loss
#: (classification: accuracy drop with labels, disagreement beyond the
#: low-margin share without; regression: error as a share of the range)
DEFAULT_TOLERANCE: dict[str, float] = {
    "classification": 0.01, "binary": 0.01, "segmentation": 0.01,
    "regression": 0.05, "reconstruction": 0.05, "embedding": 0.01,
}
#: with targets y: allowed growth of the mean absolute error over the float
#: model's, as a share of the range of y
DEFAULT_TARGET_TOLERANCE = 0.01


@dataclasses.dataclass
class Verdict:
    """How one output of a model was judged.

    Attributes:
        output: the output's name.
        task: see :data:`converters.verdicts.tasks.TASKS`.
        task_source: why this task (loss, activation, labels, ``--task``).
        against: what the output was compared with (``float model``,
            ``labels``, ``LiteRT``, ``chance``, ``nothing``).
        metric: the metric that decided, e.g. ``accuracy_drop``.
        value: its value.
        threshold: the bound it had to meet.
        higher_is_better: whether ``value`` must be ``>=`` (else ``<=``)
            ``threshold``.
        passed: the verdict.
        why: one sentence a user reads.
        details: every other number measured (agreement beside accuracy,
            SNR beside relative error, ...).
        flags: problems found on the way (``constant_reference``, ...).
    """

    output: str
    task: str
    task_source: str
    against: str
    metric: str | None
    value: float | None
    threshold: float | None
    higher_is_better: bool
    passed: bool
    why: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    flags: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """``"probs: accuracy_drop 0.002 (must be <= 0.01; passed;
        classification)"``."""
        if self.metric is None:
            return f"{self.output}: {self.why}"
        op = ">=" if self.higher_is_better else "<="
        state = "passed" if self.passed else "FAILED"
        return (f"{self.output}: {self.metric} {_num(self.value)} (must be "
                f"{op} {_num(self.threshold)}; {state}; {self.task})")


def _num(v) -> str:
    return "–" if v is None else f"{v:.4g}"


def check(metric: str, value: float, threshold: float, *,
          higher_is_better: bool) -> bool:
    """``value`` meets ``threshold`` (with float round-off slack)."""
    eps = 1e-9
    return bool(value >= threshold - eps if higher_is_better
                else value <= threshold + eps)
