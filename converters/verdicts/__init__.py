"""Task-aware verdicts: each output of a converted model is judged by what
it is for (classification, binary, segmentation, regression,
reconstruction, embedding), against its labels, the float model, or the
other runtime.

Modules:
    tasks: which task each output has (loss, activation, y, shape, --task).
    verdict: the ``Verdict`` of one output and the default tolerances.
    categorical: classification, binary and per-pixel segmentation metrics.
    values: regression, reconstruction and embedding metrics.
    judge: judge every output against labels, a reference or the other runtime.
    hints: what to try when a verdict fails.

Example:
    >>> from converters import verdicts
    >>> tasks = verdicts.resolve(specs, labels={"probs": y})
    >>> found = verdicts.judge({"probs": q}, reference={"probs": f},
    ...                        labels={"probs": y}, tasks=tasks)
    >>> [v.summary() for v in found]
    ['probs: accuracy_drop 0.002 <= 0.01 (passed; classification)']
"""

from converters.verdicts.judge import constant, judge, judge_one, per_output
from converters.verdicts.tasks import TASKS, OutputSpec, infer, resolve
from converters.verdicts.verdict import (DEFAULT_TARGET_TOLERANCE,
                                         DEFAULT_TOLERANCE, Verdict)

__all__ = ["DEFAULT_TARGET_TOLERANCE", "DEFAULT_TOLERANCE", "OutputSpec",
           "TASKS", "Verdict", "constant", "infer", "judge", "judge_one",
           "per_output", "resolve"]
