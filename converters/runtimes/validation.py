"""Validate any .tflite on data: run it in LiteRT (and TFLM for micro),
judge every output by its task, and say why.

LiteRT's outputs are judged against the float reference and the labels
(:mod:`converters.verdicts`); TFLM's against LiteRT's (builtin kernels, which
round as TFLM does). Without a float reference, LiteRT's outputs are judged
against the labels alone (or not at all), and for micro TFLM and LiteRT are
still compared with each other. Streaming models run over sequences with the
state reset between them; their outputs are judged step by step.

Example:
    >>> result = validate(tflite, x, y, reference=keras_model, target="micro")
    >>> result.report["litert"]["outputs"]["probs"]["metric"]
    'accuracy_drop'
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np

from converters import verdicts
from converters.runtimes import feeds as feeding, litert
from converters.runtimes import reference as references
from converters.tflite import flatbuffer
from converters.verdicts import hints


@dataclasses.dataclass
class Result:
    """What :func:`validate` found.

    Attributes:
        report: ``{"litert": {...}, "micro": {...}}`` for the report.
        keras: the float reference's own accuracy etc. (``report["keras"]``).
        failures: one line per failed check, naming the output.
        raw_inputs: inputs as fed (tensor dtypes), for more TFLM runs.
        raw_reference: LiteRT builtin-kernel outputs (micro only).
        feeds: the model's I/O.
        raw_micro: TFLM's outputs (micro only), as ``raw_reference``.
    """

    report: dict
    keras: dict | None
    failures: list[str]
    raw_inputs: list[np.ndarray]
    raw_reference: list[np.ndarray] | None
    feeds: feeding.Feeds
    raw_micro: list[np.ndarray] | None = None


def _labels(labels, names: list[str], stateful: bool) -> dict:
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        extra = [k for k in labels if k not in names]
        if extra:
            raise ValueError(f"labels for output(s) {extra} the model lacks; "
                             f"its outputs are {names}")
        found = dict(labels)
    elif isinstance(labels, (list, tuple)):
        if len(labels) != len(names):
            raise ValueError(f"{len(labels)} label arrays for {len(names)} "
                             f"outputs {names}")
        found = dict(zip(names, labels))
    else:
        if len(names) != 1:
            raise ValueError(f"one y for {len(names)} outputs {names}: give "
                             f"one y per output (by output name)")
        found = {names[0]: labels}
    out = {}
    for name, y in found.items():
        if y is None:
            continue
        y = np.asarray(y)
        out[name] = y.reshape((-1,) + y.shape[2:]) if stateful else y
    return out


def _merge_specs(tflite_specs, keras_specs) -> list:
    """tflite specs (names, shapes, steps) with the Keras model's loss and
    activation where an output matches by name or, one to one, position."""
    if not keras_specs:
        return tflite_specs
    by_name = {s.name: s for s in keras_specs}
    same_count = len(keras_specs) == len(tflite_specs)
    for k, spec in enumerate(tflite_specs):
        ks = by_name.get(spec.name) or (keras_specs[k] if same_count
                                        else None)
        if ks is not None:
            spec.loss = ks.loss or spec.loss
            spec.activation = ks.activation or spec.activation
    return tflite_specs


def _legacy(v: verdicts.Verdict) -> dict:
    """The flat keys reports had before per-output verdicts."""
    keep = ("agreement", "accuracy", "max_abs_error", "mean_abs_error",
            "mae", "within_tolerance")
    out = {k: v.details[k] for k in keep if v.details.get(k) is not None}
    if "agreement" not in out and "within_tolerance" in out:
        out["agreement"] = out["within_tolerance"]
    return out


def _section(found: list[verdicts.Verdict], seconds: float, n: int) -> dict:
    section = _legacy(found[0]) if len(found) == 1 else {}
    section.update(samples=int(n), seconds=round(seconds, 3),
                   passed=all(v.passed for v in found),
                   outputs={v.output: v.to_dict() for v in found})
    return section


def _failures(where: str, found: list[verdicts.Verdict]) -> list[str]:
    return [f"{where} output {v.summary()}: {v.why}" for v in found
            if not v.passed]


def validate(tflite: bytes, data, labels=None, *, info=None,
             target: str = "android", reference=None,
             keras_specs: Sequence | None = None,
             tasks: Mapping[str, str] | str | None = None,
             tolerances: Mapping[str, float] | float | None = None,
             min_accuracy: float | None = None,
             output_names: Sequence[str] | None = None,
             require_int8: bool = True) -> Result:
    """Run, judge, and report (see the module doc).

    Args:
        tflite: the model under test.
        data: inputs: one array, a list (one per input), or a dict by input
            name; float values are quantized with each input's parameters,
            arrays in the input's dtype are used as is. Streaming models:
            ``[S, T, ...]`` (S sequences of T steps).
        labels: ``y`` (one output) or ``{output name: y}``.
        info: the parsed model, when the caller has it.
        target: ``micro`` also runs TFLM and bisects the arena.
        reference: the float model (see :mod:`converters.runtimes.reference`).
        keras_specs: :func:`converters.verdicts.hints.specs_from_keras` of
            the source model (its loss and activations pick the task).
        tasks: ``--task``: one task for every output, or ``{name: task}``.
        tolerances: ``--tolerance``: one value, or ``{name: value}``.
        min_accuracy: bar for classifiers without a float reference.
        output_names: names for the outputs (e.g. read before stripping).
        require_int8: micro: refuse float compute.
    """
    started = time.perf_counter()
    info = info or flatbuffer.read(tflite)
    feeds = feeding.Feeds.of(info, output_names=output_names)
    arrays = feeds.arrange(data)
    feeds.stateful = feeds.streams(arrays)
    xs = feeds.prepare(arrays)
    n = int(xs[0].shape[0]) if xs else 0
    raw = _run_litert(tflite, xs, feeds)
    refs = None
    if reference is not None:
        found = references.outputs(reference, arrays, stateful=feeds.stateful,
                                   input_names=feeds.input_names)
        keys = references.match(found, feeds.outputs,
                                steps=feeds.stateful or None)
        for port, key in zip(feeds.outputs, keys):  # a stripped model's
            if references.generic(port.name) and not references.generic(key):
                port.name = key  # outputs take the reference's names
        refs = dict(zip(feeds.output_names, feeding.flatten_steps(
            [found[k] for k in keys], feeds.stateful)))
    names = feeds.output_names
    outs = dict(zip(names, feeding.flatten_steps(feeds.dequantize(raw),
                                                 feeds.stateful)))
    ys = _labels(labels, names, feeds.stateful)
    specs = _merge_specs(hints.specs_from_tflite(info, feeds),
                         list(keras_specs or []))
    chosen = verdicts.resolve(
        specs, user=verdicts.per_output(tasks, names, "--task"),
        input_shapes=[p.sample_shape for p in feeds.inputs], labels=ys)
    tol = verdicts.per_output(tolerances, names, "--tolerance")
    lsb = {s.name: s.lsb for s in specs}
    found = verdicts.judge(outs, tasks=chosen, reference=refs, labels=ys,
                           tolerances=tol, min_accuracy=min_accuracy,
                           lsb=lsb)
    steps = int(np.prod(xs[0].shape[:2])) if feeds.stateful else n
    report = {"litert": _section(found, time.perf_counter() - started,
                                 steps)}
    if feeds.stateful:
        report["litert"]["sequences"] = n
    failures = _failures("LiteRT", found)
    keras = None
    if refs is not None:
        keras = {}
        for v in found:
            acc = v.details.get("float_accuracy")
            if acc is not None and "accuracy" not in keras:
                keras["accuracy"] = acc
    raw_ref = raw_micro = None
    if target == "micro":
        raw_ref, raw_micro, micro, more = _micro(
            tflite, info, feeds, xs, raw, chosen, tol, lsb, require_int8)
        report["micro"] = micro
        failures += more
    return Result(report, keras, failures, xs, raw_ref, feeds, raw_micro)


def same_in_tflm(tflite: bytes, result: Result) -> dict:
    """Run another form of the model ``result`` validated (e.g. with
    encoded constants) in TFLM on the same inputs, fed the same way.

    Its outputs must be the validated model's bit for bit: then every
    verdict of ``result`` holds for it unchanged. Returns
    :func:`~converters.runtimes.tflm.validate`'s measurements (its arena)
    with ``identical`` and ``differing`` (``{output index: samples}``);
    its own LSB rule against LiteRT is ``lsb_rule_passed``.
    """
    from converters.runtimes import tflm
    feeds, xs = result.feeds, result.raw_inputs
    each = _reset_each(feeds)
    check = tflm.validate(tflite, [x[:, None] for x in xs] if each else xs,
                          [r[:, None] for r in result.raw_reference] if each
                          else result.raw_reference,
                          sequences=feeds.stateful or each, keep_outputs=True)
    got = check.pop("outputs")
    got = [g[:, 0] for g in got] if each else got
    differing = {}
    for k, (a, b) in enumerate(zip(got, result.raw_micro)):
        if a.shape != b.shape:
            differing[k] = int(len(b))
        elif not np.array_equal(a, b):
            differing[k] = int(np.sum(np.any(
                a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1)))
    check["lsb_rule_passed"] = check.pop("passed")
    check.update(identical=not differing, differing=differing)
    return check


def _reset_each(feeds) -> bool:
    """Recurrent state fed one sample per row: reset before each sample."""
    return feeds.recurrent_state and not feeds.stateful


def _run_litert(tflite, xs, feeds, **kwargs) -> list:
    if not _reset_each(feeds):
        return litert.run_feeds(tflite, xs, stateful=feeds.stateful, **kwargs)
    raw = litert.run_feeds(tflite, [x[:, None] for x in xs], stateful=True,
                           **kwargs)
    return [r[:, 0] for r in raw]


def _micro(tflite, info, feeds, xs, raw_auto, chosen, tol, lsb,
           require_int8):
    from converters.runtimes import tflm
    started = time.perf_counter()
    names = feeds.output_names
    # LiteRT's builtin kernels round as TFLM does (XNNPACK may differ by an
    # LSB or more; that difference is reported)
    raw_ref = _run_litert(tflite, xs, feeds, reference_kernels=True)
    each = _reset_each(feeds)   # one-step sequences: state reset per sample
    micro = tflm.validate(tflite, [x[:, None] for x in xs] if each else xs,
                          [r[:, None] for r in raw_ref] if each else raw_ref,
                          info=info, require_int8=require_int8,
                          sequences=feeds.stateful or each,
                          keep_outputs=True)
    got = [g[:, 0] for g in micro.pop("outputs")] if each else \
        micro.pop("outputs")
    flat = feeding.flatten_steps
    mine = dict(zip(names, flat(feeds.dequantize(got), feeds.stateful)))
    theirs = dict(zip(names, flat(feeds.dequantize(raw_ref), feeds.stateful)))
    found = verdicts.judge(mine, tasks=chosen, reference=theirs,
                           tolerances=tol, lsb=lsb, against="LiteRT")
    micro["lsb_rule_passed"] = micro.pop("passed")
    micro["xnnpack_max_abs_lsb"] = max(
        (int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))
         for a, b in zip(raw_auto, raw_ref) if a.size and
         np.issubdtype(a.dtype, np.integer)), default=0)
    section = _section(found, time.perf_counter() - started,
                       micro["samples"])
    for key in ("agreement", "samples"):
        section.pop(key, None)
    micro.update(section)
    return raw_ref, got, micro, _failures("TFLM", found)
