"""Wrappers around layers called with several positional inputs.

tfmot's ``PruneLowMagnitude`` and ``ClusterWeights`` define
``call(inputs, training=None, **kwargs)`` and pass ``inputs`` alone to the
wrapped layer: a ``MultiHeadAttention`` called as ``mha(query, value)``
would get ``value`` as ``training``. :class:`PositionalInputs`, mixed in
before the tfmot class, passes those inputs on by the layer's own argument
names.

Example:
    >>> class PruneWrapper(PositionalInputs, PruneLowMagnitude): ...
    >>> PruneWrapper(mha, schedule)(query, value)   # value reaches mha
"""

from __future__ import annotations

import inspect


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
