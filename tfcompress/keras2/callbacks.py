"""Callbacks a user adds to ``model.fit`` when training a wrapped model.

``callbacks_for(model)`` returns the ones the model needs:
:class:`PruningStep` (advances tfmot's pruning step, resolves schedules whose
length comes from ``fit``) and :class:`SparsityLogger` (puts the current
sparsity and unique-weight counts into ``logs``, hence into ``History``,
and optionally into TensorBoard).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from tfcompress.keras2 import schedules
from tfcompress.analysis import stats
from tfcompress.keras2.env import keras, tf, tfmot

from tensorflow_model_optimization.python.core.sparsity.keras import (
    pruning_wrapper)


class PruningStep(tfmot.sparsity.keras.UpdatePruningStep):
    """Advance the pruning step each batch (tfmot's ``UpdatePruningStep``)
    and resolve ``end_step``/``frequency`` left ``None`` from ``fit``'s
    epochs and steps.

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=[PruningStep()])
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        steps = self.params.get("steps")
        epochs = self.params.get("epochs", 1)
        for layer in self.prunable_layers:
            sched = getattr(layer, "pruning_schedule", None)
            if isinstance(sched, schedules._Resolvable) and not sched.resolved:
                if not steps:
                    raise ValueError(
                        f"PruningStep: cannot resolve the schedule of layer "
                        f"{layer.name!r}: fit does not know its steps per "
                        "epoch. Pass steps_per_epoch to fit or end_step and "
                        "frequency to prune().")
                start = max(0, int(keras.backend.get_value(layer.pruning_step)))
                sched.resolve(start + int(steps) * int(epochs))

    def get_config(self):
        return {}


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="scalars"))


_SCALAR_METADATA = _scalar_metadata()


class SparsityLogger(keras.callbacks.Callback):
    """Log kernel sparsity and unique-value counts at the end of each epoch.

    Adds ``sparsity`` (all kernels) and, with ``per_layer=True``,
    ``sparsity/<layer>`` and ``unique/<layer>`` to ``logs``. With ``log_dir``
    the same scalars go to TensorBoard.

    Example:
        >>> model.fit(x, y, callbacks=[PruningStep(), SparsityLogger()])
        >>> history.history["sparsity"][-1]
    """

    def __init__(self, per_layer: bool = False, log_dir: Optional[str] = None):
        super().__init__()
        self.per_layer = bool(per_layer)
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        summary = stats.summary(self.model)
        logs["sparsity"] = summary["sparsity"]
        logs["max_unique"] = summary["max_unique"]
        if self.per_layer:
            for row in summary["layers"]:
                logs[f"sparsity/{row['layer']}"] = row["sparsity"]
                logs[f"unique/{row['layer']}"] = row["unique"]
        if self.log_dir:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                for key, value in logs.items():
                    if key.startswith(("sparsity", "unique", "max_unique")):
                        # tf.summary.scalar needs the tensorboard package;
                        # write the same scalar summary without it.
                        tf.summary.write(key, np.float32(value), step=epoch,
                                         metadata=_SCALAR_METADATA)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"per_layer": self.per_layer, "log_dir": self.log_dir}


def _assigned_kernels(model) -> list:
    """``(wrapper, kernel)`` of every cluster-preserving QAT weight: tfmot
    overwrites the kernel with the clustered weight in training (the
    centroids and the original weights are what is trained), so the
    kernel itself gets no gradient."""
    from tfcompress.keras2.quantization import quantize_wrapper
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E501
        cluster_preserve_quantize_registry as cpq)
    out = []
    for layer in model.layers:
        if not isinstance(layer, quantize_wrapper.QuantizeWrapper):
            continue
        for weight, quantizer, qvars in getattr(layer, "_weight_vars", ()):
            if (isinstance(quantizer, cpq.ClusterPreserveDefaultWeightsQuantizer)
                    and cpq.CLUSTER_CENTROIDS in qvars):
                out.append((layer, weight))
    return out


class FreezeAssignedKernels(keras.callbacks.Callback):
    """Keep the kernels that cluster-preserving QAT assigns (never uses in
    the forward pass) out of the optimizer, so it neither builds slots for
    them nor warns "Gradients do not exist" every step.

    The kernels leave the layers' trainable lists at the start of each
    epoch (the train step is traced then, without them) and are put back at
    their exact positions at its end, before any other callback's
    ``on_epoch_end``: loggers and checkpoints see the whole model, and saved
    weights keep their order. It must come first among the callbacks
    (:func:`callbacks_for` puts it there).
    """

    def __init__(self):
        super().__init__()
        self._moved: list = []

    def on_epoch_begin(self, epoch, logs=None):
        self._restore()
        for wrapper, kernel in _assigned_kernels(self.model):
            for owner in (wrapper, wrapper.layer):
                lst = owner._trainable_weights
                for idx in reversed([i for i, w in enumerate(lst)
                                     if w is kernel]):
                    del lst[idx]
                    self._moved.append((lst, idx, kernel))

    def on_epoch_end(self, epoch, logs=None):
        self._restore()

    def on_train_end(self, logs=None):
        self._restore()

    def _restore(self) -> None:
        for lst, idx, kernel in reversed(self._moved):  # last out, first in
            lst.insert(idx, kernel)
        self._moved = []

    def get_config(self):
        return {}


def callbacks_for(model, *, per_layer: bool = False,
                  log_dir: Optional[str] = None) -> List[keras.callbacks.Callback]:
    """The callbacks ``model.fit`` needs for ``model``'s wrappers.

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=callbacks_for(model))
    """
    out: List[keras.callbacks.Callback] = []
    if pruning_wrapper.collect_prunable_layers(model):
        out.append(PruningStep())
    out.append(SparsityLogger(per_layer=per_layer, log_dir=log_dir))
    from tfcompress.pipeline import distribute
    from tfcompress.keras2 import quantization
    if quantization.is_quantized(model):  # input ranges equal on replicas
        out.append(distribute.SyncQuantizeRanges())
        if _assigned_kernels(model):   # first: restores before the others
            out.insert(0, FreezeAssignedKernels())
    return out
