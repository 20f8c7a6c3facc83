"""The Keras 3 wrapper base and the model rewrite every technique uses.

A :class:`WeightWrapper` runs its layer with some of the layer's weights
replaced by transformed values (masked, clustered, fake-quantized) through
``keras.StatelessScope``: the wrapped layer's own ``call`` does the math, so
any layer type works on every backend. :func:`rewrite` clones a Sequential
or Functional model with a per-layer decision, recording skipped layers in a
:class:`~tfcompress.keras3.report.CompressionReport`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np

from tfcompress.keras3.report import CompressionReport


def read(var):
    """A variable's current value as a backend tensor (inside a compiled
    step on any backend, ``var.value`` of a TensorFlow variable is the
    variable itself)."""
    return keras.ops.copy(var.value)


def resolve(layer, path: str):
    """The variable at ``path`` (``"kernel"``, ``"query_dense.kernel"``)."""
    obj = layer
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


class WeightWrapper(keras.layers.Wrapper):
    """Run ``layer`` with the weights named in ``weight_names`` transformed.

    Subclasses implement :meth:`transform` (the value the layer sees),
    optionally :meth:`build_state` (their own variables),
    :meth:`initialize` (set those from the layer's trained weights) and
    :meth:`output` (a transform of the layer's output).
    """

    def __init__(self, layer, weight_names: Sequence[str] = (), **kwargs):
        super().__init__(layer, **kwargs)
        self.weight_names = list(weight_names)

    # -- subclass hooks --------------------------------------------------
    def build_state(self) -> None:
        """Create the wrapper's own variables (the layer is built)."""

    def initialize(self) -> None:
        """Set the wrapper's variables from the layer's current weights."""

    def transform(self, name: str, value, training: bool):
        return value

    def output(self, outputs, training: bool):
        return outputs

    def run_layer(self, *args, **kwargs):
        """Call the wrapped layer (its weights already transformed)."""
        return self.layer(*args, **kwargs)

    def effective_weights(self) -> Dict[str, np.ndarray]:
        """``{weight name: numpy value the layer computes with}``."""
        return {n: keras.ops.convert_to_numpy(self.transform(
            n, read(resolve(self.layer, n)),
            False))
            for n in self.weight_names}

    # -- Keras plumbing --------------------------------------------------
    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.build_state()
        self.built = True

    def call(self, *args, training=None, **kwargs):
        training = bool(training)
        targets = {id(resolve(self.layer, n)): n for n in self.weight_names}
        mapping = []
        for var in self.layer.variables:
            name = targets.get(id(var))
            value = var.value
            if name is not None:
                value = self.transform(
                    name, read(var), training)
            mapping.append((var, value))
        params = self.layer._call_signature.parameters
        if "training" in params:
            kwargs["training"] = training
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        with keras.StatelessScope(state_mapping=mapping) as scope:
            before = dict(scope.state_mapping)
            outputs = self.run_layer(*args, **kwargs)
        for var in self.layer.variables:  # state the layer updated
            new = scope.state_mapping.get(id(var))
            if new is not before.get(id(var)) and id(var) not in targets:
                var.assign(new)
        return self.output(outputs, training)

    def compute_output_spec(self, *args, **kwargs):
        kwargs.pop("training", None)
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "weight_names": self.weight_names}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return super().from_config(dict(config), custom_objects)


def walk(model) -> List:
    """Every layer of ``model``, nested models' layers included."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if isinstance(layer, keras.Model):
            out += walk(layer)
    return out


def wrappers(model, cls=WeightWrapper) -> List:
    return [l for l in walk(model) if isinstance(l, cls)]


def is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or hasattr(
        model, "_nodes_by_depth")


def check_model(model, technique: str) -> None:
    """One clear line for model kinds the wrappers cannot rewrite."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{technique} expects a Keras 3 keras.Model, got "
                        f"{type(model).__name__}.")
    if not is_graph_model(model):
        no_config = type(model).get_config is keras.Model.get_config
        raise ValueError(
            f"{technique}: model {model.name!r} is a subclassed keras.Model "
            f"({type(model).__name__})"
            + (" without get_config" if no_config else "")
            + ": it has no layer graph to rewrite. Build it as a Functional "
            "model (keras.Model(inputs, outputs)) or a Sequential, or wrap "
            "its layers yourself in __init__ (e.g. tfcompress.keras3."
            "PruneWrapper(keras.layers.Dense(64), schedule)).")


def copy_layer(layer, config: Optional[dict] = None):
    """A fresh copy of ``layer`` (own weights), built and holding its values.

    ``config`` overrides the layer's config (e.g. ``use_bias``)."""
    new = type(layer).from_config(config or layer.get_config())
    if layer.built:
        build = layer.get_build_config()
        if build:
            new.build_from_config(build)
        if new.built and config is None:
            new.set_weights(layer.get_weights())
    return new


def rewrite(model, decide: Callable, technique: str,
            report: Optional[CompressionReport] = None):
    """Clone ``model`` replacing each layer by what ``decide(copy)`` returns.

    ``decide`` gets a built copy of the layer and returns
    ``(new_layer, None)`` (compressed) or ``(layer, reason)`` (skipped), or
    ``(new_layer, "")`` for a layer changed without being compressed.
    Returns ``(new_model, report)``; every wrapper's :meth:`initialize` has
    run on the new model.
    """
    check_model(model, technique)
    report = report if report is not None else CompressionReport()

    def clone_fn(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return type(layer).from_config(layer.get_config())
        new, reason = decide(copy_layer(layer))
        if reason is None:
            report.add(layer, technique, "compressed")
        elif reason:
            report.add(layer, technique, "skipped", reason)
        return new

    new_model = keras.models.clone_model(model, clone_function=clone_fn,
                                         recursive=True)
    for w in wrappers(new_model):
        w.initialize()
    new_model.compression_report = report
    return new_model, report
