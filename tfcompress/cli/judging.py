"""CLI options that say how outputs are judged: ``--task`` and
``--tolerance`` (convert, optimize, validate), and the lines that print each
output's verdict."""

from __future__ import annotations

import click

_TASKS = ("classification", "binary", "segmentation", "regression",
          "reconstruction", "embedding")
#: the Android tasks the TFLite Metadata describes
#: (converters.targets.android_metadata.TASKS; not imported: --help stays
#: fast) -> the verdict task of their outputs (None: inferred)
ANDROID_TASKS = {"image_classifier": "classification",
                 "audio_classifier": "classification",
                 "text_classifier": "classification",
                 "image_segmenter": "segmentation",
                 "object_detector": None, "generic": None}


def _split(value: str, option: str) -> tuple[str, str]:
    """``"NAME=VALUE"`` -> ``(NAME, VALUE)``; ``"VALUE"`` -> ``("", VALUE)``."""
    name, sep, rest = value.rpartition("=")
    if sep and not name:
        raise click.BadParameter(f"{value!r}: give VALUE or OUTPUT=VALUE",
                                 param_hint=option)
    return (name, rest) if sep else ("", value)


def parse(tasks: tuple[str, ...], tolerances: tuple[str, ...]) -> dict:
    """``{"tasks": {output: task}, "tolerances": {output: value}}``; the
    output ``""`` stands for every output not named."""
    out: dict = {}
    found = {}
    for value in tasks:
        name, task = _split(value, "--task")
        if task not in _TASKS and task not in ANDROID_TASKS:
            raise click.BadParameter(
                f"unknown task {task!r}; valid: "
                f"{', '.join(_TASKS + tuple(ANDROID_TASKS))}",
                param_hint="--task")
        if task in ANDROID_TASKS:
            if name:
                raise click.BadParameter(
                    f"{value!r}: {task} describes the whole model for "
                    "Android; give it without OUTPUT=", param_hint="--task")
            task = ANDROID_TASKS[task]
            if task is None:
                continue
        found[name] = task
    if found:
        out["tasks"] = found
    found = {}
    for value in tolerances:
        name, number = _split(value, "--tolerance")
        try:
            found[name] = float(number)
        except ValueError:
            raise click.BadParameter(
                f"{value!r}: the tolerance is a number such as 0.02 (or "
                f"OUTPUT=0.02)", param_hint="--tolerance") from None
        if not 0 <= found[name] <= 1:
            raise click.BadParameter(
                f"{value!r}: the tolerance is a share between 0 and 1",
                param_hint="--tolerance")
    if found:
        out["tolerances"] = found
    return out


def android_task(tasks: tuple[str, ...]) -> str | None:
    """The Android task named among ``--task`` values, or the one a model-wide
    verdict task implies (classification: detected kind; segmentation:
    image_segmenter; regression and the rest: generic); None: detect."""
    plain = [v for v in tasks if "=" not in v]
    for value in plain:
        if value in ANDROID_TASKS:
            return value
    for value in plain:
        if value == "segmentation":
            return "image_segmenter"
        if value in ("regression", "reconstruction", "embedding"):
            return "generic"
    return None


def options(fn):
    """``--task`` and ``--tolerance`` (both repeatable, per output)."""
    fn = click.option(
        "--tolerance", "tolerances", multiple=True, metavar="[OUTPUT=]T",
        help="Allowed loss of the deciding metric, per output or for all: "
             "accuracy drop (labels), disagreement beyond low-margin "
             "samples (no labels), error as a share of the output range "
             "(regression). Repeatable.")(fn)
    fn = click.option(
        "--task", "tasks", multiple=True, metavar="[OUTPUT=]TASK",
        help="How to judge an output (default: inferred from loss, "
             "activation, shape and y): " + ", ".join(_TASKS)
             + ". For --target android also the task the TFLite Metadata "
             "describes (default: detected): " + ", ".join(ANDROID_TASKS)
             + ". Repeatable.")(fn)
    return fn


def verdict_rows(report: dict) -> list[tuple[str, str]]:
    """One row per output and runtime: ``metric value op threshold``."""
    rows = []
    val = report.get("validation", {})
    for runtime, label in (("litert", "litert"), ("micro", "tflm")):
        for name, v in (val.get(runtime, {}).get("outputs") or {}).items():
            if v.get("metric") is None:
                text = v["why"]
            else:
                op = ">=" if v["higher_is_better"] else "<="
                text = (f"{v['metric']} {v['value']:.4g} (must be {op} "
                        f"{v['threshold']:.4g}) vs {v['against']} "
                        f"({v['task']}): "
                        f"{'passed' if v['passed'] else 'FAILED'}")
            rows.append((f"{label} {name}", text))
    return rows


def failure(report: dict) -> str:
    """The first failed check in one line, naming the output."""
    failures = report.get("validation", {}).get("failures") or []
    return failures[0] if failures else "see report.json"
