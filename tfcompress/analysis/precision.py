"""Automatic per-layer precision beyond weight bits: int8 or int16
activations (int16 with int8 weights, "16x8") per layer, and for Android a
float fallback per layer, chosen from measured sensitivity under a byte or
accuracy budget.

Every number here is measured on converted models, not predicted: the float
model is converted once to a float .tflite and calibrated once; each
candidate plan is quantized by ai-edge-quantizer
(:class:`converters.conversion.precision.Quantizer`), sized (after TFLM LUT
compression when weight bits below 8 are given) and run in LiteRT's
reference kernels on the validation data.

* :func:`analyze`: every layer alone at int16 (and float for android) with
  the rest int8: accuracy, output error vs the float model, bytes; plus the
  uniform choices (all int8, all int16, all float).
* :func:`choose`: from all-int8, greedily take the measured move (one layer
  one step up) with the largest output-error reduction per byte added,
  while the model stays within ``max_bytes``; with ``max_accuracy_drop``,
  stop at the first plan within the drop. Moves are measured with the
  earlier moves applied, so neighbouring int16 layers (which share int16
  tensors) are found together.
* :func:`apply`: the plan's .tflite, :func:`validate`: LiteRT vs the float
  model, and for micro TFLM vs LiteRT (the LUT-compressed model too).

Example:
    >>> ev = Evaluator(model, x_val, y_val, target="micro")
    >>> sens = analyze(ev)
    >>> plan = choose(ev, sens, max_accuracy_drop=0.005)
    >>> write(sens, plan, ev, "build/precision")
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional

import numpy as np

from converters.conversion import precision as prec
from converters.conversion.signature import as_input

#: what each target may use per layer, cheapest first
CHOICES = {"micro": ("int8", "int16"),
           "android": ("int8", "int16", "float")}
_RANK = {"int8": 0, "int16": 1, "float": 2}


@dataclasses.dataclass
class Trial:
    """One measured plan: the layers not at int8, and what it costs."""

    precisions: Dict[str, str]
    bytes: int
    accuracy: float
    error: float      # output MSE / output variance of the float model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Sensitivity:
    """Float accuracy, uniform plans, and every layer alone one step up."""

    target: str
    float_accuracy: float
    uniform: Dict[str, Trial]
    layers: List[dict]     # {"layer", "ops", "micro_int16", p: Trial}

    def to_dict(self) -> dict:
        return {"target": self.target, "float_accuracy": self.float_accuracy,
                "uniform": {k: v.to_dict() for k, v in self.uniform.items()},
                "layers": [{k: (v.to_dict() if isinstance(v, Trial) else v)
                            for k, v in r.items()} for r in self.layers]}


@dataclasses.dataclass
class Plan:
    """The chosen precision per layer and the measured path to it."""

    target: str
    precisions: Dict[str, str]     # every layer
    trial: Trial
    budget: dict
    met: bool
    path: List[Trial]
    weight_bits: Optional[Dict[str, int]] = None

    @property
    def drop(self) -> float:
        """Accuracy drop of the plan vs the float model (a fraction)."""
        return self._float - self.trial.accuracy

    _float: float = 0.0

    def recipe(self) -> dict:
        """The plan as the project's recipe section (YAML/JSON)."""
        out = {"precision": {"target": self.target, "default": "int8",
                             "layers": dict(self.precisions)}}
        if self.weight_bits:
            out["precision"]["weight_bits"] = dict(self.weight_bits)
        return out

    def to_dict(self) -> dict:
        return {"target": self.target, "precisions": self.precisions,
                "trial": self.trial.to_dict(), "budget": self.budget,
                "met": self.met, "drop": round(self.drop, 6),
                "path": [t.to_dict() for t in self.path],
                "weight_bits": self.weight_bits}


def _outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Dequantized outputs, one invoke per sample, LiteRT builtin
    (reference) kernels: they round as TFLM does."""
    from converters.runtimes import litert
    interp = litert.interpreter(tflite, reference_kernels=True)
    inp, out = interp.get_input_details(), interp.get_output_details()
    if len(inp) != 1 or len(out) != 1:
        raise ValueError(f"precision planning supports one input and one "
                         f"output; the model has {len(inp)} and {len(out)}")
    xq = litert.quantize(x, inp[0])
    rows = []
    for row in xq:
        interp.set_tensor(inp[0]["index"], row[None])
        interp.invoke()
        rows.append(interp.get_tensor(out[0]["index"])[0].copy())
    return litert.dequantize(np.stack(rows), out[0]).reshape(len(x), -1)


class Evaluator:
    """Measures plans of one model on validation data.

    Args:
        model: the float Keras model (the reference).
        x, y: validation inputs and integer labels (``y=None``: agreement
            with the float model's top-1).
        target: ``micro`` (int8/int16) or ``android`` (also float).
        weight_bits: ``{layer: bits}`` (8/4/2/1,
            :mod:`tfcompress.analysis.mixed_precision`): those kernels are
            replaced by their k-means values and bytes are counted after
            TFLM LUT compression (micro).
    """

    def __init__(self, model, x: np.ndarray, y: Optional[np.ndarray] = None,
                 *, target: str = "micro",
                 weight_bits: Optional[Dict[str, int]] = None):
        from converters.conversion.modes import convert_bytes
        if target not in CHOICES:
            raise ValueError(f"unknown target {target!r}; valid: "
                             f"{sorted(CHOICES)}")
        self.target = target
        self.x = as_input(x)
        self.reference = np.asarray(model.predict(
            self.x, batch_size=256, verbose=0)).reshape(len(self.x), -1)
        self.y = (self.reference.argmax(1) if y is None
                  else np.asarray(y).reshape(-1))
        self.float_accuracy = float(np.mean(self.reference.argmax(1)
                                            == self.y))
        self.weight_bits = {n: int(b) for n, b in (weight_bits or {}).items()
                            if b < 8} or None
        if self.weight_bits and target != "micro":
            raise ValueError("weight bits below 8 are stored by TFLM's LUT "
                             "compression: use them with target micro")
        quantized = model
        if self.weight_bits:
            from tfcompress.analysis import mixed_precision
            quantized = mixed_precision.apply_bits(model, self.weight_bits)
        self.model = quantized
        self.float_tflite = convert_bytes(quantized, mode="float32")
        self.names = [layer.name for layer in model.layers]
        self.quantizer = prec.Quantizer(self.float_tflite, self.x,
                                        names=self.names)
        self.layers = self.quantizer.layers
        self._cache: Dict[tuple, Trial] = {}

    def options(self, name: str) -> List[str]:
        """Precisions above int8 this layer may take on the target."""
        out = list(CHOICES[self.target][1:])
        if self.target == "micro" and self.layers[name].micro_int16():
            out.remove("int16")
        return out

    def tflite(self, precisions: Dict[str, str]) -> bytes:
        """The plan's model as LiteRT runs it (LUT not applied)."""
        return self.quantizer.apply(precisions, self.target)

    def shipped(self, tflite: bytes) -> bytes:
        """What the target stores: LUT-compressed with weight bits."""
        if not self.weight_bits:
            return tflite
        from converters.encodings import lut
        small, _ = lut.compress_clustered(tflite, verify=False)
        return small if small is not None else tflite

    def measure(self, precisions: Dict[str, str]) -> Trial:
        plan = {n: p for n, p in precisions.items() if p != "int8"}
        key = tuple(sorted(plan.items()))
        if key not in self._cache:
            tflite = self.tflite(plan)
            out = _outputs(tflite, self.x)
            err = float(np.mean((out - self.reference) ** 2)
                        / max(float(np.var(self.reference)), 1e-12))
            self._cache[key] = Trial(
                plan, len(self.shipped(tflite)),
                float(np.mean(out.argmax(1) == self.y)), round(err, 8))
        return self._cache[key]


def analyze(ev: Evaluator) -> Sensitivity:
    """Each layer alone one step up (the rest int8), and the uniform
    plans: all int8, all int16 (where the target runs it), all float
    (android)."""
    from converters import progress
    names = list(ev.layers)
    uniform = {"int8": ev.measure({})}
    up16 = {n: "int16" for n in names if "int16" in ev.options(n)}
    if up16:
        uniform["int16"] = ev.measure(up16)
    if ev.target == "android":
        uniform["float"] = ev.measure({n: "float" for n in names})
    rows = []
    with progress.bar(sum(len(ev.options(n)) for n in names),
                      "precision sweep", unit="plan") as bar:
        for n in names:
            row = {"layer": n, "ops": ev.layers[n].ops,
                   "micro_int16": ev.layers[n].micro_int16()}
            for p in ev.options(n):
                row[p] = ev.measure({n: p})
                bar.update()
            rows.append(row)
    return Sensitivity(ev.target, ev.float_accuracy, uniform, rows)


def choose(ev: Evaluator, sens: Sensitivity, *,
           max_bytes: Optional[int] = None,
           max_accuracy_drop: Optional[float] = None,
           max_steps: Optional[int] = None, min_gain: float = 0.01) -> Plan:
    """Precision per layer under ``max_bytes`` (bytes the target stores)
    and/or ``max_accuracy_drop`` (vs the float model, a fraction).

    With ``max_bytes`` alone: the lowest output error reachable within it;
    a move must cut the output error by ``min_gain`` of its current value
    (or raise the accuracy) to be worth its bytes.
    With ``max_accuracy_drop``: the first (smallest) plan on the greedy path
    within the drop (``met`` False when none is).

    Raises:
        ValueError: no budget, or ``max_bytes`` is below the all-int8 model.
    """
    if max_bytes is None and max_accuracy_drop is None:
        raise ValueError("choose: give max_bytes (bytes of the model the "
                         "target stores) and/or max_accuracy_drop (a "
                         "fraction, 0.01 = 1 point)")
    start = sens.uniform["int8"]
    if max_bytes is not None and start.bytes > max_bytes:
        raise ValueError(
            f"max_bytes={max_bytes} is below the all-int8 model "
            f"({start.bytes} bytes): raise it, or lower weight bits first "
            "(--weight-bits)")
    state: Dict[str, str] = {}
    current, path = start, [start]
    steps = max_steps if max_steps is not None else 2 * len(ev.layers)

    def within(t: Trial) -> bool:
        return max_accuracy_drop is not None and \
            ev.float_accuracy - t.accuracy <= max_accuracy_drop + 1e-9

    for _ in range(steps):
        if within(current):
            break
        best, best_score = None, 0.0
        for move in _moves(ev, state):
            t = ev.measure({**state, **move})
            if max_bytes is not None and t.bytes > max_bytes:
                continue
            gain = (current.error - t.error) + \
                max(0.0, t.accuracy - current.accuracy)
            score = gain / max(t.bytes - current.bytes, 16)
            if gain > min_gain * current.error and score > best_score:
                best, best_score = t, score
        if best is None:
            break
        state, current = dict(best.precisions), best
        path.append(best)
    if max_accuracy_drop is None:
        current = min(path, key=lambda t: (t.error, t.bytes))
    met = (max_bytes is None or current.bytes <= max_bytes) and (
        max_accuracy_drop is None or within(current))
    plan = Plan(ev.target, {n: current.precisions.get(n, "int8")
                            for n in ev.layers}, current,
                {"max_bytes": max_bytes,
                 "max_accuracy_drop": max_accuracy_drop}, met, path,
                ev.weight_bits)
    plan._float = ev.float_accuracy
    return plan


def _moves(ev: Evaluator, state: Dict[str, str]) -> List[Dict[str, str]]:
    """One layer one precision up, or two consecutive layers together (an
    int16 tensor between two layers needs both at int16: either alone
    requantizes it to int8 and gains nothing)."""
    names = list(ev.layers)
    out = []
    for i, n in enumerate(names):
        group = [n] + names[i + 1:i + 2]
        for size in (1, 2):
            members = group[:size]
            if len(members) < size:
                continue
            for p in ev.options(n):
                if any(p not in ev.options(m) for m in members) or all(
                        _RANK[state.get(m, "int8")] >= _RANK[p]
                        for m in members):
                    continue
                move = {m: p for m in members
                        if _RANK[state.get(m, "int8")] < _RANK[p]}
                if move not in out:
                    out.append(move)
    return out


def apply(ev: Evaluator, plan: Plan) -> bytes:
    """The plan's model as the target stores it (LUT-compressed with
    weight bits)."""
    return ev.shipped(ev.tflite(plan.precisions))


def validate(ev: Evaluator, plan: Plan, model, x: np.ndarray,
             y: Optional[np.ndarray] = None) -> dict:
    """Run the plan's model in LiteRT against the float ``model``, and for
    micro in TFLM against LiteRT (its LUT-compressed form too: outputs
    identical to the plain model's in TFLM). Returns
    ``{"litert", "micro", "lut", "dtypes", "failures", "passed"}``."""
    from converters.runtimes import tflm, validation
    from converters.tflite import flatbuffer
    plain = ev.tflite(plan.precisions)
    result = validation.validate(plain, x, y, info=flatbuffer.read(plain),
                                 target=ev.target, reference=model)
    report = {k: result.report.get(k) for k in ("litert", "micro")}
    failures = list(result.failures)
    shipped = ev.shipped(plain)
    if shipped is not plain:
        got = tflm.validate(shipped, result.raw_inputs, result.raw_reference,
                            keep_outputs=True)
        mine = tflm.run(plain, result.raw_inputs)
        same = all(np.array_equal(a, b) for a, b in zip(got.pop("outputs"),
                                                        mine))
        report["lut"] = {"bytes": len(shipped), "plain_bytes": len(plain),
                         "identical_to_plain": same,
                         "arena_bytes": got["arena_bytes"]}
        if not same:
            failures.append("the LUT-compressed model differs from the "
                            "plain one in TFLM")
    report["dtypes"] = prec.compute_dtypes(plain, ev.names)
    report["bytes"] = len(shipped)
    report["failures"] = failures
    report["passed"] = not failures
    return report


def write(sens: Sensitivity, plan: Plan, ev: Evaluator, out_dir: str, *,
          tflite: Optional[bytes] = None, validation: Optional[dict] = None,
          extra_points: Optional[Dict[str, dict]] = None) -> Dict[str, str]:
    """Write ``precision.json`` (sensitivity, plan, validation),
    ``precision.yaml`` (the project's recipe section), ``aeq_recipe.json``
    (the ai-edge-quantizer recipe that applies it to the float .tflite),
    ``precision.png`` and, given, ``model.tflite``; return their paths."""
    import yaml
    from converters.files import atomic_write
    from tfcompress.analysis import precision_plot
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f) for k, f in (
        ("json", "precision.json"), ("recipe", "precision.yaml"),
        ("aeq_recipe", "aeq_recipe.json"))}
    atomic_write(paths["json"], json.dumps(
        {"sensitivity": sens.to_dict(), "plan": plan.to_dict(),
         "validation": validation}, indent=2))
    atomic_write(paths["recipe"], yaml.safe_dump(plan.recipe(),
                                                 sort_keys=False))
    atomic_write(paths["aeq_recipe"], json.dumps(
        ev.quantizer.aeq_recipe(plan.precisions), indent=2))
    if tflite is not None:
        paths["model"] = atomic_write(os.path.join(out_dir, "model.tflite"),
                                      tflite)
    png = precision_plot.plot(sens, plan, os.path.join(
        out_dir, "precision.png"), extra_points)
    if png:
        paths["png"] = png
    return paths
