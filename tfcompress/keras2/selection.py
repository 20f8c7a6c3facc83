"""Which layers a compression technique touches, and why others are skipped.

Every wrapper (``prune``, ``cluster``, ``quantize``) walks the model with
:func:`apply_to_layers`, which clones the model and asks a ``decide`` callback
per layer. Skipped layers are recorded in a :class:`CompressionReport` with a
named reason, so a user can see what was compressed and what was not.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

from tfcompress.keras2.env import keras
from tfcompress.selectors import LayerSelector, matches  # noqa: F401
from tfcompress.keras2.nesting import (check_functional, flatten,  # noqa: F401
                                       fresh_copy, nested_names)

SKIP_USER = "skipped by user"
SKIP_NO_WEIGHTS = "no weights"
SKIP_NO_SUPPORT = "no support for this layer type"
SKIP_TOO_SMALL = "too few weights"
SKIP_FIRST_LAST = "first/last layer kept at 8 bits"



@dataclasses.dataclass
class LayerEntry:
    name: str
    type: str
    technique: str
    status: str  # "compressed" or "skipped"
    reason: str = ""
    params: int = 0


@dataclasses.dataclass
class CompressionReport:
    """Per-layer record of what a wrapper did."""

    entries: list = dataclasses.field(default_factory=list)

    def add(self, layer, technique: str, status: str, reason: str = "") -> None:
        self.entries.append(
            LayerEntry(layer.name, type(layer).__name__, technique, status,
                       reason, int(layer.count_params()) if layer.built else 0))

    @property
    def compressed(self) -> list:
        return [e.name for e in self.entries if e.status == "compressed"]

    @property
    def skipped(self) -> dict:
        return {e.name: e.reason for e in self.entries if e.status == "skipped"}

    def to_dict(self) -> list:
        return [dataclasses.asdict(e) for e in self.entries]

    def __str__(self) -> str:
        rows = [f"{e.technique:9s} {e.name:24s} {e.type:22s} {e.status}"
                + (f" ({e.reason})" if e.reason else "") for e in self.entries]
        return "\n".join(rows)


def apply_to_layers(model, decide: Callable, technique: str,
                    report: Optional[CompressionReport] = None):
    """Clone ``model`` replacing each layer by ``decide(copy)``.

    ``decide`` receives a fresh copy of the layer (its own weights, not
    shared with the input model) and returns ``(new_layer, None)`` to wrap it
    or ``(copy, reason)`` to keep it as is. Returns ``(new_model, report)``.
    """
    check_functional(model, technique)
    report = report if report is not None else CompressionReport()
    for name in nested_names(model):
        report.entries.append(LayerEntry(name, "Model", technique, "flattened",
                                         "nested model inlined"))
    model = flatten(model)

    def clone_fn(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        new_layer, reason = decide(fresh_copy(layer))
        if reason is None:
            report.add(layer, technique, "compressed")
        else:
            report.add(layer, technique, "skipped", reason)
        return new_layer

    new_model = keras.models.clone_model(model, clone_function=clone_fn)
    return new_model, report


def parse_selectors(values: Optional[Sequence]) -> list:
    return list(values or [])
