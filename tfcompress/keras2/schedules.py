"""Sparsity schedules: when and how much to prune.

Both schedules subclass tfmot's, so tfmot's pruning wrapper drives them. They
add one thing: ``end_step`` (and ``frequency``) may be left ``None`` and are
then resolved from the length of the ``fit`` call by
:class:`tfcompress.callbacks.PruningStep`, so a user need not compute steps.
"""

from __future__ import annotations

from typing import Optional, Union

from tfcompress.keras2.env import tf, tfmot

_sched = tfmot.sparsity.keras

#: share of the training steps over which sparsity ramps up; the rest
#: fine-tunes with the final mask.
RAMP_FRACTION = 0.8


class _Resolvable:
    """Shared logic for schedules with steps resolved at ``fit`` time."""

    def resolve(self, total_steps: int) -> None:
        """Fill in ``end_step``/``frequency`` for a fit of ``total_steps``."""
        if self.frequency is None:
            self.frequency = max(1, min(100, total_steps // 20))
        if self.end_step is None:
            span = max(1, int(RAMP_FRACTION * total_steps))
            self.end_step = self.begin_step + span

    @property
    def resolved(self) -> bool:
        return self.end_step is not None and self.frequency is not None

    def _check_resolved(self) -> None:
        if not self.resolved:
            raise ValueError(
                f"{type(self).__name__}: end_step/frequency are unresolved. "
                "Pass callbacks=tfcompress.callbacks_for(model) to fit, or "
                "give end_step and frequency explicitly.")


class ConstantSparsity(_Resolvable, _sched.ConstantSparsity):
    """Prune to ``target_sparsity`` at every ``frequency`` steps.

    Example:
        >>> schedule = ConstantSparsity(0.5)       # steps resolved by fit
    """

    def __init__(self, target_sparsity: float, begin_step: int = 0,
                 end_step: int = -1, frequency: Optional[int] = None):
        self.target_sparsity = float(target_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = end_step
        self.frequency = frequency
        self._validate_sparsity(self.target_sparsity, "target_sparsity")
        if self.resolved:
            self._validate_step(self.begin_step, self.end_step,
                                self.frequency, True)

    def __call__(self, step):
        self._check_resolved()
        return (self._should_prune_in_step(step, self.begin_step,
                                           self.end_step, self.frequency),
                tf.constant(self.target_sparsity, dtype=tf.float32))

    def get_config(self):
        return {"class_name": type(self).__name__, "config": {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step, "end_step": self.end_step,
            "frequency": self.frequency}}


class PolynomialSparsity(_Resolvable, _sched.PolynomialDecay):
    """Ramp sparsity from ``initial_sparsity`` to ``target_sparsity``
    polynomially (Zhu & Gupta, 2017) between ``begin_step`` and ``end_step``.

    Example:
        >>> schedule = PolynomialSparsity(0.75)    # end_step resolved by fit
    """

    def __init__(self, target_sparsity: float, initial_sparsity: float = 0.0,
                 begin_step: int = 0, end_step: Optional[int] = None,
                 power: float = 3, frequency: Optional[int] = None):
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(target_sparsity)
        self.power = power
        self.begin_step = int(begin_step)
        self.end_step = end_step
        self.frequency = frequency
        self._validate_sparsity(self.initial_sparsity, "initial_sparsity")
        self._validate_sparsity(self.final_sparsity, "target_sparsity")
        if self.resolved:
            self._validate_step(self.begin_step, self.end_step,
                                self.frequency, False)

    @property
    def target_sparsity(self) -> float:
        return self.final_sparsity

    def __call__(self, step):
        self._check_resolved()
        return super().__call__(step)

    def get_config(self):
        return {"class_name": type(self).__name__, "config": {
            "target_sparsity": self.final_sparsity,
            "initial_sparsity": self.initial_sparsity,
            "begin_step": self.begin_step, "end_step": self.end_step,
            "power": self.power, "frequency": self.frequency}}


SCHEDULES = {
    "constant": ConstantSparsity,
    "polynomial": PolynomialSparsity,
}


def get(identifier: Union[str, dict, _sched.PruningSchedule],
        target_sparsity: Optional[float] = None, **kwargs):
    """Return a schedule from a name, a ``get_config`` dict or an instance.

    Example:
        >>> get("polynomial", target_sparsity=0.75)
    """
    if isinstance(identifier, _sched.PruningSchedule):
        return identifier
    if isinstance(identifier, dict):
        cls = {c.__name__: c for c in SCHEDULES.values()}.get(
            identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Could not interpret schedule {identifier!r}")
        return cls.from_config(identifier["config"])
    if isinstance(identifier, str):
        if identifier not in SCHEDULES:
            raise ValueError(
                f"Unknown schedule {identifier!r}; valid names: "
                f"{sorted(SCHEDULES)}.")
        if target_sparsity is None:
            raise ValueError(f"schedule {identifier!r} needs target_sparsity.")
        return SCHEDULES[identifier](target_sparsity, **kwargs)
    raise ValueError(f"Could not interpret schedule {identifier!r}")


def custom_objects() -> dict:
    return {c.__name__: c for c in SCHEDULES.values()}
