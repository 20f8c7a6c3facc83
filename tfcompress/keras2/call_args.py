"""Wrapping layers called with several inputs (``MultiHeadAttention``).

tfmot's ``PruneLowMagnitude`` and ``ClusterWeights`` define
``call(inputs, training=None, **kwargs)`` and pass ``inputs`` alone to the
wrapped layer: a ``MultiHeadAttention`` called as ``mha(query, value)``
would get ``value`` as ``training``. :class:`PositionalInputs`, mixed in
before the tfmot class, passes those inputs on by the layer's own argument
names. :func:`build_sublayers` and :func:`unique_weight_names` let a wrapped
MHA be built from a saved config and saved to HDF5.

Example:
    >>> class PruneWrapper(PositionalInputs, PruneLowMagnitude): ...
    >>> PruneWrapper(mha, schedule)(query, value)   # value reaches mha
"""

from __future__ import annotations

import collections
import contextlib
import inspect

from tfcompress.keras2.env import tf


class PositionalInputs:
    """Mixin: a wrapper's further positional inputs reach its layer."""

    def call(self, inputs, *args, training=None, **kwargs):
        if args:
            names = list(inspect.signature(self.layer.call).parameters)[1:]
            if len(args) > len(names):
                raise TypeError(
                    f"{type(self).__name__}: layer {self.layer.name!r} takes "
                    f"{len(names) + 1} inputs, got {len(args) + 1}")
            kwargs.update(zip(names, args))
        return super().call(inputs, training=training, **kwargs)


def build_sublayers(layer) -> None:
    """Create the weights of a ``MultiHeadAttention`` restored from its
    config: ``from_config`` makes its ``EinsumDense`` projections but their
    weights appear only on the first call, which a wrapper's ``build``
    (reading the kernels to prune) comes before. Calls it once on zeros of
    the recorded query/value/key shapes."""
    shapes = [getattr(layer, f"_{k}_shape", None)
              for k in ("query", "value", "key")]
    if layer.weights or not hasattr(layer, "_build_from_signature") or \
            any(s is None or None in list(s)[1:] for s in shapes):
        return
    query, value, key = (tf.zeros([1, *list(s)[1:]]) for s in shapes)
    layer(query, value, key=key)


@contextlib.contextmanager
def unique_weight_names(wrapper):
    """Number repeated weight names that ``wrapper.build`` adds (tfmot
    names each weight's mask ``mask``: four for a MultiHeadAttention,
    which an HDF5 file cannot hold side by side)."""
    seen = collections.Counter()
    add = wrapper.add_weight

    def add_weight(name=None, *args, **kwargs):
        seen[name] += 1
        if name is not None and seen[name] > 1:
            name = f"{name}_{seen[name] - 1}"
        return add(name, *args, **kwargs)
    wrapper.add_weight = add_weight
    try:
        yield
    finally:
        del wrapper.add_weight
