"""``flatten``: inline nested models (a pretrained base inside a Functional
model) into one flat graph of layers.

tfmot cannot quantize nested models, and per-layer compression needs to see
the base model's layers. The flat model computes the same function with
copies of the same weights (layers called several times stay shared).
"""

from __future__ import annotations

from typing import Dict, List

from tfcompress.keras2.env import keras, tf


class _Always:
    """A ``tensor_dict`` entry that keeps returning its value (Keras' own
    entries are lists popped once per use)."""

    def __init__(self, value):
        self.value = value

    def pop(self):
        return self.value


def check_functional(model, technique: str) -> None:
    """Raise a clear error for model kinds the wrappers cannot clone."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{technique} expects a tf_keras Model, got {type(model).__name__}. "
            "Build the model with `from tfcompress import keras`.")
    if not (isinstance(model, keras.Sequential) or model._is_graph_network):
        raise ValueError(
            f"{technique}: model {model.name!r} is a subclassed Model "
            f"({type(model).__name__}); it has no layer graph to rewrite. "
            "Rebuild it as a Sequential or Functional model, or wrap its "
            "layers individually and call the wrapper on each layer.")


def fresh_copy(layer):
    """A copy of ``layer`` with copied (not shared) weights."""
    if isinstance(layer, keras.Model):
        new = keras.models.clone_model(layer)
        new.set_weights(layer.get_weights())
        return new
    new = layer.__class__.from_config(layer.get_config())
    if layer.weights:
        new.build(layer.get_input_shape_at(0))
        if len(new.weights) != len(layer.weights):
            build_by_calling(new, layer)
        new.set_weights(layer.get_weights())
    return new


def build_by_calling(new, layer) -> None:
    """Create ``new``'s weights by calling it as ``layer`` was first called,
    on placeholders of the same shapes. Layers whose weights live in
    sublayers built on the first call (``MultiHeadAttention``'s
    ``EinsumDense`` projections) get none from ``build(shape)``."""
    node = layer._inbound_nodes[0]

    def placeholder(x):
        if tf.is_tensor(x):   # symbolic (KerasTensor) or eager
            return keras.Input(batch_shape=x.shape, dtype=x.dtype)
        return x
    args = tf.nest.map_structure(placeholder, node.call_args)
    kwargs = tf.nest.map_structure(placeholder, node.call_kwargs)
    new(*args, **kwargs)


def is_nested(model) -> bool:
    return any(isinstance(l, keras.Model) for l in model.layers)


def nested_names(model) -> List[str]:
    return [l.name for l in model.layers if isinstance(l, keras.Model)]


def flatten(model) -> keras.Model:
    """A copy of ``model`` with every nested Functional/Sequential model
    inlined; returns ``model`` itself when nothing is nested.

    Example:
        >>> base = keras.Sequential([...])             # pretrained
        >>> inp = keras.Input((96, 96, 3)); out = head(base(inp))
        >>> flat = flatten(keras.Model(inp, out))      # base's layers inline
    """
    check_functional(model, "flatten")
    if not is_nested(model):
        return model
    copies: Dict[int, keras.layers.Layer] = {}

    def copy_of(layer):
        if id(layer) not in copies:
            copies[id(layer)] = fresh_copy(layer)
        return copies[id(layer)]

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype,
                          name=layer.name)
              for t, layer in zip(model.inputs, model._input_layers)]
    outputs = _replay(model, inputs, copy_of)
    flat = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                       name=model.name)
    return flat


def _replay(model, inputs, copy_of) -> list:
    for sub in model.layers:
        if isinstance(sub, keras.Model) and not (
                sub._is_graph_network or isinstance(sub, keras.Sequential)):
            raise ValueError(
                f"flatten: nested model {sub.name!r} is subclassed "
                f"({type(sub).__name__}); rebuild it as Functional or "
                "Sequential to compress its layers")
    tensors = {str(id(t)): _Always(x) for t, x in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors
                                    for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            layer = node.layer
            if isinstance(layer, keras.Model):
                flat_in = tf.nest.flatten(args[0] if args else
                                          next(iter(kwargs.values())))
                out = _replay(layer, flat_in, copy_of)
                out = out[0] if len(out) == 1 else out
            else:
                out = copy_of(layer)(*args, **kwargs)
            for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(out)):
                tensors[x_id] = _Always(y)
    return [tensors[str(id(t))].pop() for t in model.outputs]
