"""Magnitude pruning for Keras 3: ``prune`` wraps a model.

:class:`PruneWrapper` keeps a 0/1 mask per pruned weight and the pruning
step in variables; each training call advances the step and, on update
steps of its schedule, recomputes the masks from the magnitudes, all in
``keras.ops`` (TensorFlow and JAX backends). ``m_by_n=(2, 4)`` makes 2 of
every 4 consecutive weights along the input-channel axis zero.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple, Union

import keras
import numpy as np
from keras import ops

from tfcompress.keras3 import report as rp
from tfcompress.keras3 import schedules
from tfcompress.keras3.base import WeightWrapper, read, resolve, rewrite
from tfcompress.keras3.selection import matches, prunable_weights

MIN_WEIGHTS = 16  # layers with fewer prunable weights are skipped


def _input_axis(layer, name: str) -> int:
    """The input-channel axis of a kernel (M:N groups run along it)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return -1
    rank = len(resolve(layer, name).shape)
    return 0 if rank == 2 else -2


@keras.saving.register_keras_serializable("tfcompress")
class PruneWrapper(WeightWrapper):
    """Prune the weights ``weight_names`` of ``layer`` by magnitude.

    Args:
        layer: the layer to prune.
        schedule: a schedule from :mod:`tfcompress.keras3.schedules`, a name
            with ``target_sparsity`` or a serialized schedule.
        m_by_n: ``(m, n)``: m of every n weights zero (structured).
        weight_names: weights to prune (default: the layer type's kernels).

    Example:
        >>> dense = PruneWrapper(keras.layers.Dense(64), "constant",
        ...                      target_sparsity=0.5)
    """

    def __init__(self, layer, schedule="polynomial", m_by_n=None,
                 weight_names=None, target_sparsity: Optional[float] = None,
                 **kwargs):
        names = weight_names if weight_names is not None else \
            prunable_weights(layer)
        super().__init__(layer, names, **kwargs)
        self.schedule = schedules.get(schedule, target_sparsity)
        self.m_by_n = tuple(m_by_n) if m_by_n else None

    def build_state(self):
        s = self.schedule
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int32", trainable=False,
            initializer="zeros")
        self.end_step = self.add_weight(
            name="end_step", shape=(), dtype="int32", trainable=False,
            initializer=keras.initializers.Constant(
                -1 if s.end_step is None else s.end_step))
        self.frequency = self.add_weight(
            name="frequency", shape=(), dtype="int32", trainable=False,
            initializer=keras.initializers.Constant(
                -1 if s.frequency is None else s.frequency))
        self.masks = {n: self.add_weight(
            name=n.replace(".", "_") + "_mask",
            shape=tuple(resolve(self.layer, n).shape), trainable=False,
            initializer="ones") for n in self.weight_names}

    @property
    def resolved(self) -> bool:
        return int(keras.ops.convert_to_numpy(read(self.end_step))) >= 0 and \
            int(keras.ops.convert_to_numpy(read(self.frequency))) >= 0

    def resolve(self, total_steps: int) -> None:
        """Fill in unresolved ``end_step``/``frequency`` for a training run
        of ``total_steps`` more steps (from the current pruning step)."""
        if self.resolved:
            return
        step = int(keras.ops.convert_to_numpy(read(self.pruning_step)))
        s = self.schedule
        end, freq = schedules.resolve_steps(
            total_steps, s.begin_step, s.end_step, s.frequency)
        if s.end_step is None:
            end = max(end, s.begin_step) if step <= s.begin_step else \
                step + (end - s.begin_step)
        self.end_step.assign(end)
        self.frequency.assign(freq)

    def _new_mask(self, name, value, old_mask, step):
        magnitude = ops.abs(value * old_mask)
        if self.m_by_n is not None:
            return _m_by_n_mask(magnitude, self.m_by_n,
                                _input_axis(self.layer, name))
        sparsity = self.schedule.sparsity(step, read(self.end_step))
        flat = ops.sort(ops.reshape(magnitude, (-1,)))
        size = int(np.prod(value.shape))
        k = ops.cast(ops.round(sparsity * size), "int32")
        threshold = ops.take(flat, ops.maximum(k - 1, 0))
        keep = ops.logical_or(magnitude > threshold, k <= 0)
        return ops.cast(keep, old_mask.dtype)

    def transform(self, name, value, training):
        mask = self.masks[name]
        if not training:
            return value * read(mask)
        if name == self.weight_names[0]:  # one step per call
            self._step = read(self.pruning_step)
            self.pruning_step.assign(self._step + 1)
        step = self._step
        update = self.schedule.should_update(step, read(self.end_step),
                                             read(self.frequency))
        update = ops.logical_and(update, read(self.end_step) >= 0)
        old = read(mask)
        new = ops.cond(update, lambda: self._new_mask(name, value, old, step),
                       lambda: old)
        mask.assign(new)
        return value * new

    def get_config(self):
        return {**super().get_config(),
                "schedule": keras.saving.serialize_keras_object(self.schedule),
                "m_by_n": list(self.m_by_n) if self.m_by_n else None}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["schedule"] = schedules.get(config["schedule"])
        return super().from_config(config, custom_objects)


def _m_by_n_mask(magnitude, m_by_n, axis):
    """1 for the ``n - m`` largest of every ``n`` along ``axis``."""
    m, n = m_by_n
    moved = ops.moveaxis(magnitude, axis, -1)
    shape = tuple(moved.shape)
    groups = ops.reshape(moved, shape[:-1] + (shape[-1] // n, n))
    rank = ops.argsort(ops.argsort(-groups, axis=-1), axis=-1)
    keep = ops.cast(rank < (n - m), magnitude.dtype)
    return ops.moveaxis(ops.reshape(keep, shape), -1, axis)


def _skip_reason(layer, skip, m_by_n) -> Optional[str]:
    if matches(layer, skip):
        return rp.SKIP_USER
    if isinstance(layer, keras.Model):
        return rp.SKIP_NESTED
    if not layer.weights:
        return rp.SKIP_NO_WEIGHTS
    names = prunable_weights(layer)
    if not names:
        return rp.SKIP_NO_SUPPORT
    sizes = [int(np.prod(resolve(layer, n).shape)) for n in names]
    if min(sizes) < MIN_WEIGHTS:
        return rp.SKIP_TOO_SMALL
    if m_by_n is not None:
        for n in names:
            dim = resolve(layer, n).shape[_input_axis(layer, n)]
            if dim % m_by_n[1]:
                return (f"{n}: {dim} input channels is not a multiple of "
                        f"{m_by_n[1]} ({m_by_n[0]}:{m_by_n[1]} sparsity)")
    return None


def prune(model, target_sparsity: float = 0.5,
          schedule: Union[str, dict, schedules.ConstantSparsity] =
          "polynomial", *, begin_step: int = 0,
          end_step: Optional[int] = None, frequency: Optional[int] = None,
          per_layer: Optional[Dict[str, float]] = None,
          skip: Optional[Iterable] = None,
          m_by_n: Optional[Tuple[int, int]] = None,
          report: Optional[rp.CompressionReport] = None, **unused):
    """Wrap every prunable layer of a Keras 3 ``model`` for magnitude pruning.

    Args:
        model: a Sequential or Functional Keras 3 model.
        target_sparsity: fraction of zero weights each wrapped kernel reaches.
        schedule: ``"polynomial"``, ``"constant"``, a schedule or its config
            (then ``target_sparsity`` and the step arguments are ignored).
        begin_step, end_step, frequency: schedule steps; ``None`` resolves
            them from the ``fit`` call (see ``callbacks_for``).
        per_layer: ``{layer name: sparsity}`` overrides.
        skip: layers to leave dense: names, classes, class names, ``"re:.."``.
        m_by_n: structured sparsity, e.g. ``(2, 4)``: 2 of every 4 zero.
        report: a :class:`CompressionReport` to append to.

    Returns:
        The wrapped Keras 3 model; ``model.compression_report`` lists what
        was pruned and what was skipped, with the reason.

    Example:
        >>> pruned = prune(model, 0.75)
        >>> pruned.compile(...)
        >>> pruned.fit(x, y, callbacks=tfcompress.callbacks_for(pruned))
    """
    if unused.get("block_size", (1, 1)) not in ((1, 1), [1, 1]):
        raise ValueError("prune: block_size is not supported for Keras 3 "
                         "models; use m_by_n=(2, 4) for structured sparsity.")
    per_layer = dict(per_layer or {})
    from tfcompress.keras3.base import walk
    unknown = set(per_layer) - {l.name for l in walk(model)}
    if unknown:
        raise ValueError(f"prune: per_layer names {sorted(unknown)} are not "
                         f"layers of model {model.name!r}.")
    if m_by_n is not None and not 0 < m_by_n[0] < m_by_n[1]:
        raise ValueError(f"prune: m_by_n must be (m, n) with 0 < m < n, got "
                         f"{m_by_n}.")

    def decide(layer):
        reason = _skip_reason(layer, skip, m_by_n)
        if reason is not None:
            return layer, reason
        sched = schedules.get(
            schedule, per_layer.get(layer.name, target_sparsity),
            begin_step=begin_step, end_step=end_step, frequency=frequency) \
            if isinstance(schedule, str) else schedules.get(schedule)
        return PruneWrapper(layer, sched, m_by_n, name=layer.name), None

    new_model, report = rewrite(model, decide, "prune", report)
    if not report.compressed:
        raise ValueError(f"prune: no layer of model {model.name!r} can be "
                         f"pruned (skipped: {report.skipped}).")
    return new_model
