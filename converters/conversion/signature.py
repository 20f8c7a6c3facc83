"""The function the TFLite converter sees for a Keras model.

A Keras model (Keras 3 or tf_keras) is traced into one concrete function
with a fixed batch of 1, its inputs named after the Keras inputs and its
outputs after the Keras outputs, in their dtypes (int32 token ids stay
int32). A fixed batch is what microcontrollers and apps run, and it lets
the converter fuse the Keras LSTM into ``UNIDIRECTIONAL_SEQUENCE_LSTM`` and
drop the ``SHAPE``/``FILL``/``REDUCE_PROD`` ops a dynamic batch adds to
LayerNormalization and reshapes. Keras 3 models are traced with the
int8-friendly forms of :mod:`converters.conversion.int8_forms`.

Example:
    >>> fn = serving_function(model)
    >>> conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Union

import numpy as np

__all__ = ["as_input", "feed", "input_names", "output_names",
           "serving_function", "trackable"]

Inputs = Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]]


def input_names(model) -> List[str]:
    """Names of the model's inputs (its Input layers), in call order."""
    names = getattr(model, "input_names", None)
    if names:
        return list(names)
    return [t.name.split(":")[0] for t in model.inputs]


def output_names(model) -> List[str]:
    """Names of the model's outputs (the layers that produce them)."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == len(model.outputs):
        return names
    return [_producer(t) for t in model.outputs]


def _producer(tensor) -> str:
    """The name of the layer that outputs ``tensor`` (Keras 3 tensors are
    named ``keras_tensor_N``; their history names the layer)."""
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None) or getattr(history, "layer",
                                                           None)
    if getattr(layer, "name", None):
        return layer.name
    return tensor.name.split(":")[0].split("/")[0]


def as_input(a) -> np.ndarray:
    """``a`` in the dtype a converted model takes it: floats as float32,
    integers (token ids) and booleans kept (int64 as int32)."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return a.astype(np.int32) if a.dtype == np.int64 else a
    return a.astype(np.float32)


def feed(model, x: Inputs) -> List[np.ndarray]:
    """``x`` as a list with one array per model input, in input order.

    ``x`` is an array (one input), a list in input order, or a dict keyed
    by input name. Arrays keep their dtype.

    Raises:
        ValueError: the count or the names do not match the model's inputs;
            the message lists the names expected.
    """
    names = input_names(model)
    if isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"no data for input(s) {missing}; the model's "
                             f"inputs are {names}")
        return [np.asarray(x[n]) for n in names]
    if isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(f"{len(x)} input arrays for a model with "
                             f"{len(names)} inputs {names}")
        return [np.asarray(v) for v in x]
    if len(names) != 1:
        raise ValueError(f"one input array for a model with {len(names)} "
                         f"inputs {names}; pass one array per input")
    return [np.asarray(x)]


def serving_function(model, batch: int = 1):
    """A concrete function of ``model`` with a fixed ``batch``.

    Its signature inputs are the Keras input names (in their dtypes) and
    its outputs a dict keyed by the Keras output names.
    """
    import tensorflow as tf

    names = input_names(model)
    outs = output_names(model)
    specs = []
    for tensor, name in zip(model.inputs, names):
        shape = tuple(tensor.shape)[1:]   # a None stays dynamic (-1 in
        # the .tflite: LiteRT resizes it, TFLM refuses it by name)
        dtype = tf.as_dtype(getattr(tensor.dtype, "name", tensor.dtype))
        specs.append(tf.TensorSpec((batch, *shape), dtype, name=name))
    single = len(specs) == 1

    @tf.function
    def serve(*args):
        result = model(args[0] if single else list(args), training=False)
        result = result if isinstance(result, (list, tuple)) else [result]
        return {name: value for name, value in zip(outs, result)}

    from converters.conversion.int8_forms import int8_forms
    from converters.loading.generation import is_keras3
    if not is_keras3(model):
        return serve.get_concrete_function(*specs)
    with int8_forms():   # LayerNorm and Embedding without float-only ops
        return serve.get_concrete_function(*specs)


def trackable(model):
    """What the converter saves the function's variables with: the model
    itself (tf_keras), or a ``tf.Module`` holding the TensorFlow variables
    of a Keras 3 model (Keras 3 layers are not TensorFlow trackables)."""
    from converters.loading.generation import is_keras3
    if not is_keras3(model):
        return model
    import tensorflow as tf
    holder = tf.Module()
    holder.keras_variables = [getattr(v, "value", v) for v in model.variables]
    return holder


def dtypes(model) -> Dict[str, str]:
    """``{input name: dtype name}`` of the model's inputs."""
    return {name: getattr(t.dtype, "name", str(t.dtype))
            for name, t in zip(input_names(model), model.inputs)}
