"""Callbacks for a Keras 3 ``model.fit`` of a wrapped model, and the hooks
a custom training loop calls instead.

The wrappers do their per-step work inside the train step (a pruning
wrapper advances its step and recomputes masks in its training call, a QAT
wrapper updates its ranges), so ``fit`` needs only :class:`PruningStep`
(resolve schedules left open from the ``fit`` length) and, for logging,
:class:`SparsityLogger`.

A custom training loop (``GradientTape``, ``jax.grad`` with
``stateless_call``, ...) calls::

    tfcompress.keras3.callbacks.begin_training(model, total_steps)
    for x, y in batches:                 # model(x, training=True) inside
        train_step(x, y)                 # advances the pruning step
    logs = tfcompress.keras3.callbacks.end_epoch(model)  # sparsity, unique
"""

from __future__ import annotations

from typing import List, Optional

import keras

from tfcompress.keras3.base import wrappers
from tfcompress.keras3.pruning import PruneWrapper
from tfcompress.keras3.strip import summary


def begin_training(model, total_steps: Optional[int]) -> None:
    """Resolve pruning schedules left open for ``total_steps`` more steps
    (a no-op for schedules already resolved, e.g. on resume)."""
    for layer in wrappers(model, PruneWrapper):
        if layer.resolved:
            continue
        if not total_steps:
            raise ValueError(
                f"PruningStep: cannot resolve the schedule of layer "
                f"{layer.name!r}: the number of training steps is unknown. "
                "Pass steps_per_epoch to fit, or end_step and frequency to "
                "prune().")
        layer.resolve(int(total_steps))


def end_epoch(model, per_layer: bool = False) -> dict:
    """Sparsity and unique values per channel of ``model``'s kernels."""
    s = summary(model)
    logs = {"sparsity": s["sparsity"], "max_unique": s["max_unique"]}
    if per_layer:
        for row in s["layers"]:
            logs[f"sparsity/{row['layer']}"] = row["sparsity"]
            logs[f"unique/{row['layer']}"] = row["unique"]
    return logs


def pruning_step(model) -> Optional[int]:
    """The largest pruning step of ``model``'s wrappers (None: none)."""
    steps = [int(keras.ops.convert_to_numpy(w.pruning_step.value))
             for w in wrappers(model, PruneWrapper)]
    return max(steps) if steps else None


class PruningStep(keras.callbacks.Callback):
    """Resolve pruning schedules from ``fit``'s epochs and steps.

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=[PruningStep()])
    """

    def on_train_begin(self, logs=None):
        steps = self.params.get("steps")
        epochs = self.params.get("epochs", 1)
        begin_training(self.model, int(steps) * int(epochs) if steps else
                       None)


class SparsityLogger(keras.callbacks.Callback):
    """Put kernel ``sparsity`` and ``max_unique`` (values per channel) into
    the epoch logs, hence into ``History``; per layer with ``per_layer``.

    Example:
        >>> history.history["sparsity"][-1]
    """

    def __init__(self, per_layer: bool = False, log_dir: Optional[str] = None):
        super().__init__()
        self.per_layer = bool(per_layer)
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        values = end_epoch(self.model, self.per_layer)
        if logs is not None:
            logs.update(values)
        if self.log_dir:
            self._write(values, epoch)

    def _write(self, values: dict, epoch: int) -> None:
        """TensorBoard scalars through ``tf.summary`` (no tensorboard
        package needed)."""
        import numpy as np
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name="scalars"))
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for key, value in values.items():
                tf.summary.write(key, np.float32(value), step=epoch,
                                 metadata=meta)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def callbacks_for(model, *, per_layer: bool = False,
                  log_dir: Optional[str] = None) -> List:
    """The callbacks ``model.fit`` needs for a wrapped Keras 3 ``model``.

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=callbacks_for(model))
    """
    out: List = []
    if wrappers(model, PruneWrapper):
        out.append(PruningStep())
    out.append(SparsityLogger(per_layer=per_layer, log_dir=log_dir))
    return out
