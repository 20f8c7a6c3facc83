"""Per-layer record of what a Keras 3 wrapper compressed or skipped.

The same rows as the Keras 2 ``CompressionReport`` (``to_dict`` feeds
``report.json``), without importing tf_keras.
"""

from __future__ import annotations

import dataclasses

SKIP_USER = "skipped by user"
SKIP_NO_WEIGHTS = "no weights"
SKIP_NO_SUPPORT = "no support for this layer type"
SKIP_TOO_SMALL = "too few weights"
SKIP_RECURRENT = ("recurrent layer: no int8 QAT for Keras 3 LSTM/GRU; float "
                  "in training, left to the converter")
SKIP_NESTED = "nested model: its layers are compressed one by one"


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
        self.entries.append(LayerEntry(
            layer.name, type(layer).__name__, technique, status, reason,
            int(layer.count_params()) if layer.built else 0))

    @property
    def compressed(self) -> list:
        return [e.name for e in self.entries if e.status == "compressed"]

    @property
    def skipped(self) -> dict:
        return {e.name: e.reason for e in self.entries if e.status == "skipped"}

    def to_dict(self) -> list:
        return [dataclasses.asdict(e) for e in self.entries]

    def __str__(self) -> str:
        return "\n".join(
            f"{e.technique:9s} {e.name:24s} {e.type:22s} {e.status}"
            + (f" ({e.reason})" if e.reason else "") for e in self.entries)
