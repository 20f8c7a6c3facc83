"""Sparsity schedules for Keras 3 pruning: when and how much to prune.

The same two schedules as the Keras 2 path (constant, polynomial), computed
with ``keras.ops`` so they run inside a compiled train step on any backend.
``end_step`` and ``frequency`` may be left ``None``: the pruning wrapper
keeps them in variables that :class:`~tfcompress.keras3.callbacks.PruningStep`
fills in from the length of ``fit`` (a checkpoint keeps them, so a resumed
run continues the same schedule).
"""

from __future__ import annotations

from typing import Optional, Union

import keras
from keras import ops

#: share of the training steps over which sparsity ramps up; the rest
#: fine-tunes with the final mask.
RAMP_FRACTION = 0.8


def resolve_steps(total_steps: int, begin_step: int = 0,
                  end_step: Optional[int] = None,
                  frequency: Optional[int] = None) -> tuple:
    """``(end_step, frequency)`` for a fit of ``total_steps`` steps; the
    ramp ends on an update step so the target is reached exactly."""
    if frequency is None:
        frequency = max(1, min(100, total_steps // 20))
    if end_step is None:
        span = max(1, int(RAMP_FRACTION * total_steps))
        end_step = begin_step + max(frequency, span // frequency * frequency)
    return int(end_step), int(frequency)


def _check_sparsity(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")
    return value


@keras.saving.register_keras_serializable("tfcompress")
class ConstantSparsity:
    """Prune to ``target_sparsity`` at every ``frequency`` steps from
    ``begin_step`` to ``end_step``.

    Example:
        >>> schedule = ConstantSparsity(0.5)       # steps resolved by fit
    """

    def __init__(self, target_sparsity: float, begin_step: int = 0,
                 end_step: Optional[int] = None,
                 frequency: Optional[int] = None):
        self.target_sparsity = _check_sparsity(target_sparsity,
                                               "target_sparsity")
        self.begin_step = int(begin_step)
        self.end_step = end_step
        self.frequency = frequency

    def should_update(self, step, end_step, frequency):
        """Whether ``step`` (a tensor) recomputes the mask."""
        since = step - self.begin_step
        return ops.logical_and(
            ops.logical_and(since >= 0, step <= end_step),
            ops.equal(ops.mod(since, ops.maximum(frequency, 1)), 0))

    def sparsity(self, step, end_step):
        return ops.cast(self.target_sparsity, "float32")

    def get_config(self) -> dict:
        return {"target_sparsity": self.target_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


@keras.saving.register_keras_serializable("tfcompress")
class PolynomialSparsity(ConstantSparsity):
    """Ramp from ``initial_sparsity`` to ``target_sparsity`` polynomially
    (Zhu & Gupta, 2017) between ``begin_step`` and ``end_step``.

    Example:
        >>> schedule = PolynomialSparsity(0.75)    # end_step resolved by fit
    """

    def __init__(self, target_sparsity: float, initial_sparsity: float = 0.0,
                 begin_step: int = 0, end_step: Optional[int] = None,
                 power: float = 3.0, frequency: Optional[int] = None):
        super().__init__(target_sparsity, begin_step, end_step, frequency)
        self.initial_sparsity = _check_sparsity(initial_sparsity,
                                                "initial_sparsity")
        self.power = float(power)

    def sparsity(self, step, end_step):
        span = ops.cast(ops.maximum(end_step - self.begin_step, 1), "float32")
        done = ops.clip(ops.cast(step - self.begin_step, "float32") / span,
                        0.0, 1.0)
        return self.target_sparsity + (
            self.initial_sparsity - self.target_sparsity) * (1.0 - done) ** \
            self.power

    def get_config(self) -> dict:
        return {**super().get_config(),
                "initial_sparsity": self.initial_sparsity,
                "power": self.power}


SCHEDULES = {"constant": ConstantSparsity, "polynomial": PolynomialSparsity}


def get(identifier: Union[str, dict, ConstantSparsity],
        target_sparsity: Optional[float] = None, **kwargs) -> ConstantSparsity:
    """A schedule from a name, a serialized dict or an instance (copied).

    Example:
        >>> get("polynomial", target_sparsity=0.75)
    """
    if isinstance(identifier, ConstantSparsity):
        return type(identifier).from_config(identifier.get_config())
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        if identifier not in SCHEDULES:
            raise ValueError(f"Unknown schedule {identifier!r}; valid names: "
                             f"{sorted(SCHEDULES)}.")
        if target_sparsity is None:
            raise ValueError(f"schedule {identifier!r} needs target_sparsity.")
        return SCHEDULES[identifier](target_sparsity, **kwargs)
    raise ValueError(f"Could not interpret schedule {identifier!r}: use "
                     f"{sorted(SCHEDULES)}, a schedule or its config.")
