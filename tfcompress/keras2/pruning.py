"""Magnitude pruning: ``prune`` wraps a model, ``strip_pruning`` unwraps it.

Built on tfmot's ``PruneLowMagnitude``; adds per-layer targets, skip lists,
schedules whose length is taken from ``fit``, a wrapper whose ``get_config``
keeps M:N sparsity, and a report of skipped layers.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple, Union

from tfcompress.keras2 import schedules
from tfcompress.keras2 import selection
from tfcompress.keras2.call_args import (PositionalInputs, build_sublayers,
                                          unique_weight_names)
from tfcompress.keras2.env import keras, tfmot

# tfmot's public API has no name for the registry or the wrapper class.
from tensorflow_model_optimization.python.core.sparsity.keras import (
    prune_registry, pruning_wrapper)

_prune = tfmot.sparsity.keras

MIN_WEIGHTS = 16  # layers with fewer prunable weights are skipped


class PruneWrapper(PositionalInputs, pruning_wrapper.PruneLowMagnitude):
    """tfmot's pruning wrapper with a lossless ``get_config``.

    tfmot drops ``sparsity_m_by_n`` on save; this keeps it, and resolves the
    toolkit's own schedules on load. Layers called with several inputs
    (``MultiHeadAttention``) get them all (:class:`PositionalInputs`).
    """

    def __init__(self, layer, pruning_schedule, block_size=(1, 1),
                 block_pooling_type="AVG", sparsity_m_by_n=None, **kwargs):
        if sparsity_m_by_n is not None:
            sparsity_m_by_n = tuple(sparsity_m_by_n)
        super().__init__(layer, pruning_schedule=pruning_schedule,
                         block_size=block_size,
                         block_pooling_type=block_pooling_type,
                         sparsity_m_by_n=sparsity_m_by_n, **kwargs)
        self.sparsity_m_by_n = sparsity_m_by_n

    def build(self, input_shape):
        build_sublayers(self.layer)
        with unique_weight_names(self):   # one mask per prunable weight
            super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "sparsity_m_by_n": self.sparsity_m_by_n}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["pruning_schedule"] = schedules.get(config["pruning_schedule"])
        config["layer"] = keras.layers.deserialize(config["layer"])
        return cls(**config)


class PrunableDepthwiseConv2D(keras.layers.DepthwiseConv2D,
                              tfmot.sparsity.keras.PrunableLayer):
    """DepthwiseConv2D whose depthwise kernel tfmot may prune (tfmot's
    registry lists no prunable weight for it). Exists only while wrapped:
    :func:`strip_pruning` turns it back into a plain DepthwiseConv2D."""

    def get_prunable_weights(self):
        return [self.depthwise_kernel]


def _prunable_copy(layer):
    if type(layer) is not keras.layers.DepthwiseConv2D:
        return layer
    new = PrunableDepthwiseConv2D.from_config(layer.get_config())
    new.build(layer._build_input_shape)  # a fresh copy: built, never called
    new.set_weights(layer.get_weights())
    return new


def prunable_weight_count(layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return int(layer.depthwise_kernel.shape.num_elements())
    if not prune_registry.PruneRegistry.supports(layer):
        return 0
    weights = prune_registry.PruneRegistry._weight_names(layer)  # noqa
    found = (_attribute(layer, w) for w in weights)
    return sum(int(w.shape.num_elements()) for w in found if w is not None)


def _attribute(layer, path: str):
    """``layer.<path>``, where tfmot names sublayer weights with dots
    (``MultiHeadAttention``: ``"_query_dense.kernel"``); ``None`` if absent."""
    for part in path.split("."):
        layer = getattr(layer, part, None)
    return layer


def _skip_reason(layer, skip) -> Optional[str]:
    if selection.matches(layer, skip):
        return selection.SKIP_USER
    if not layer.weights:
        return selection.SKIP_NO_WEIGHTS
    if isinstance(layer, keras.Model):
        return "nested model: prune its layers by passing it to prune()"
    if not (prune_registry.PruneRegistry.supports(layer) or
            isinstance(layer, keras.layers.DepthwiseConv2D)):
        return selection.SKIP_NO_SUPPORT
    try:
        n = prunable_weight_count(layer)
    except Exception:  # layer types whose weights are built lazily
        n = MIN_WEIGHTS
    if n == 0:
        return "no prunable weights (e.g. depthwise/normalization)"
    if n < MIN_WEIGHTS:
        return selection.SKIP_TOO_SMALL
    return None


def prune(model, target_sparsity: float = 0.5,
          schedule: Union[str, dict, object] = "polynomial", *,
          begin_step: int = 0, end_step: Optional[int] = None,
          frequency: Optional[int] = None,
          per_layer: Optional[Dict[str, float]] = None,
          skip: Optional[Iterable] = None,
          m_by_n: Optional[Tuple[int, int]] = None,
          block_size: Tuple[int, int] = (1, 1),
          report: Optional[selection.CompressionReport] = None):
    """Wrap every prunable layer of ``model`` for magnitude pruning.

    Args:
        model: a Sequential or Functional ``tfcompress.keras`` model.
        target_sparsity: fraction of zero weights each wrapped kernel reaches.
        schedule: ``"polynomial"``, ``"constant"``, a schedule config dict or
            a schedule instance (then ``target_sparsity`` is ignored).
        begin_step, end_step, frequency: schedule steps; ``None`` resolves
            them from the ``fit`` call (see ``callbacks_for``).
        per_layer: ``{layer name: sparsity}`` overrides.
        skip: layers to leave dense: names, classes, class names, ``"re:.."``.
        m_by_n: structured sparsity, e.g. ``(2, 4)``: 2 of every 4 are zero
            (along the input-channel axis), as sparse kernels expect.
        block_size: block sparsity for rank-2 kernels.
        report: a :class:`CompressionReport` to append to.

    Returns:
        The wrapped model; its ``compression_report`` lists skipped layers.

    Example:
        >>> pruned = prune(model, 0.75, "polynomial")
        >>> pruned.compile(...)
        >>> pruned.fit(x, y, callbacks=callbacks_for(pruned))
    """
    per_layer = dict(per_layer or {})
    unknown = set(per_layer) - {l.name for l in _all_layers(model)}
    if unknown:
        raise ValueError(f"prune: per_layer names {sorted(unknown)} are not "
                         f"layers of model {model.name!r}.")
    if m_by_n is not None:
        m, n = m_by_n
        if not (0 < m < n):
            raise ValueError(f"prune: m_by_n must be (m, n) with 0 < m < n, "
                             f"got {m_by_n}.")

    def decide(layer):
        reason = _skip_reason(layer, skip)
        if reason is not None:
            return layer, reason
        sparsity = per_layer.get(layer.name, target_sparsity)
        sched = schedules.get(schedule, target_sparsity=sparsity,
                              begin_step=begin_step, end_step=end_step,
                              frequency=frequency) \
            if isinstance(schedule, str) else _copy_schedule(schedule)
        return PruneWrapper(_prunable_copy(layer), pruning_schedule=sched,
                            block_size=block_size, sparsity_m_by_n=m_by_n), None

    new_model, report = selection.apply_to_layers(model, decide, "prune",
                                                  report)
    new_model.compression_report = report
    if not report.compressed:
        raise ValueError(
            f"prune: no layer of model {model.name!r} can be pruned "
            f"(skipped: {report.skipped}).")
    return new_model


def _copy_schedule(schedule):
    s = schedules.get(schedule)
    return type(s).from_config(s.get_config()["config"])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def is_pruned(model) -> bool:
    return any(isinstance(l, pruning_wrapper.PruneLowMagnitude)
               for l in model.layers)


def strip_pruning(model):
    """Remove pruning wrappers; kernels keep their zeros."""
    stripped = _prune.strip_pruning(model)
    if not any(isinstance(l, PrunableDepthwiseConv2D) for l in stripped.layers):
        return stripped

    def plain(layer):
        if isinstance(layer, PrunableDepthwiseConv2D):
            new = keras.layers.DepthwiseConv2D.from_config(layer.get_config())
            new.build(layer.get_input_shape_at(0))
            new.set_weights(layer.get_weights())
            return new
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(stripped, clone_function=plain)
    out.set_weights(stripped.get_weights())
    return out


def custom_objects() -> dict:
    return {"PruneWrapper": PruneWrapper,
            "PrunableDepthwiseConv2D": PrunableDepthwiseConv2D,
            **schedules.custom_objects()}
