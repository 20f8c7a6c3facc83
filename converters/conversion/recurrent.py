"""Recurrent layers (LSTM, GRU, SimpleRNN) on their way to int8.

What the converter does with them, measured with TF 2.21 (fixed batch 1):

=====================  =============================================  ======
layer                  converted to                                   int8
=====================  =============================================  ======
tf_keras LSTM          ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (fused; TFLM   yes
                       and LiteRT have int8 kernels)
tf_keras GRU, SimpleRNN a ``WHILE`` loop: int8 calibration crashes     no
Keras 3 LSTM/GRU/RNN   a ``WHILE`` loop (Keras 3 marks no fusable      no
                       function): int8 calibration crashes
any, ``unroll=True``   FULLY_CONNECTED/LOGISTIC/TANH/MUL/ADD per step   yes
=====================  =============================================  ======

So an int8 conversion refuses a layer that would become a loop, before the
converter is called (its crash would end the process), with one line naming
the layer and the way forward: ``--unroll`` (:func:`unrolled`), which unrolls
the recurrent layers over their fixed number of time steps when one of them
would become a loop, and leaves a model whose recurrent layers all fuse
(tf_keras LSTMs: the fused op is smaller, and TFLM runs it) as it is. A
model with unrolled layers is converted from its frozen function
(:mod:`converters.conversion.frozen`): the converter folds the weight-only
ops of the steps, and every op is int8, run to run. Freezing turns a fused
LSTM into a loop, so a model that would mix the two is unrolled whole (one
built with both, ``unroll=True`` by hand, converts unfrozen).
"""

from __future__ import annotations

from typing import List, Tuple

from converters.errors import ConversionError

__all__ = ["RECURRENT", "blocking_layers", "check", "has_fused",
           "has_unrolled", "unrolled"]

#: Keras recurrent layer classes (both generations use these names)
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D",
             "ConvLSTM3D")


def _leaves(model):
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None) and not hasattr(layer, "cell"):
            yield from _leaves(layer)
        else:
            yield layer


def _inner(layer):
    """The recurrent layer itself (inside a Bidirectional wrapper too)."""
    return getattr(layer, "forward_layer", None) or getattr(
        layer, "layer", None) or layer


def _fuses(layer) -> bool:
    """tf_keras LSTM: the converter fuses it into one sequence op."""
    rnn = _inner(layer)
    root = type(rnn).__module__.split(".")[0]
    return root == "tf_keras" and type(rnn).__name__ == "LSTM" and \
        layer is rnn


def blocking_layers(model) -> List[Tuple[str, str]]:
    """``(name, class)`` of each recurrent layer that would become a
    ``WHILE`` loop in the .tflite (not unrolled, not fusable)."""
    found = []
    for layer in _leaves(model):
        rnn = _inner(layer)
        if type(rnn).__name__ not in RECURRENT:
            continue
        if getattr(rnn, "unroll", False) or _fuses(layer):
            continue
        found.append((layer.name, type(layer).__name__))
    return found


def has_unrolled(model) -> bool:
    """Whether ``model`` has a recurrent layer with ``unroll=True``."""
    return any(type(_inner(layer)).__name__ in RECURRENT and
               getattr(_inner(layer), "unroll", False)
               for layer in _leaves(model))


def has_fused(model) -> bool:
    """Whether ``model`` has a layer the converter fuses (a tf_keras LSTM,
    fused only from the unfrozen function)."""
    return any(_fuses(layer) and not getattr(layer, "unroll", False)
               for layer in _leaves(model))


def check(model, mode: str) -> None:
    """Refuse a calibrated (int8, int16x8) conversion of a model with a
    recurrent layer that would become a loop.

    Raises:
        ConversionError: one line naming the layer and the way forward.
    """
    if mode not in ("int8", "int16x8"):
        return
    blocking = blocking_layers(model)
    if not blocking:
        return
    name, cls = blocking[0]
    more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
    hint = ("tf_keras LSTM layers are fused into UNIDIRECTIONAL_SEQUENCE_LSTM"
            if cls != "LSTM" or _generation(model) == 2 else
            "Keras 3 LSTM layers are not fused by the converter")
    raise ConversionError(
        f"layer {name!r} ({cls}){more} becomes a WHILE loop that has no "
        f"{mode} TFLite kernel; convert with --unroll (unroll=True over its "
        f"fixed time steps: plain ops that LiteRT and TFLM run; {hint})")


def _generation(model) -> int:
    from converters.loading.generation import model_generation
    return model_generation(model)


def unrolled(model):
    """A copy of ``model`` with ``unroll=True`` on every recurrent layer
    (same weights) when one would become a ``WHILE`` loop
    (:func:`blocking_layers`): the converter then emits plain per-step ops.
    ``model`` itself when none would: its layers are unrolled already or
    fuse (a tf_keras LSTM stays fused). A fusing layer beside a looping one
    is unrolled too: the unrolled model converts frozen, which would make
    the fused layer a loop.

    Raises:
        ConversionError: a recurrent layer has no fixed number of time
            steps (unrolling needs one); names the layer.
    """
    targets = {layer.name for layer in _leaves(model)
               if type(_inner(layer)).__name__ in RECURRENT} \
        if blocking_layers(model) else set()
    if not targets:
        return model
    for layer in _leaves(model):
        if layer.name in targets:
            steps = _steps(layer)
            if steps is None:
                raise ConversionError(
                    f"layer {layer.name!r} ({type(layer).__name__}) has no "
                    "fixed number of time steps; --unroll needs one: build "
                    "the model with Input(shape=(steps, features))")
    keras = _keras_of(model)

    def clone(layer):
        config = layer.get_config()
        if layer.name in targets:
            if "unroll" in config:
                config["unroll"] = True
            for key in ("layer", "backward_layer"):  # Bidirectional
                inner = config.get(key, {}).get("config")
                if isinstance(inner, dict) and "unroll" in inner:
                    inner["unroll"] = True
        return layer.__class__.from_config(config)

    from converters.loading.models import load_scope
    with load_scope():   # wrapped (QAT) layers' classes known when cloning
        copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _steps(layer):
    shape = layer.input.shape if hasattr(layer, "input") else None
    if shape is None or len(shape) < 3:
        return None
    return shape[1]


def _keras_of(model):
    if _generation(model) == 3:
        import keras
        return keras
    from converters.loading.kerasenv import keras
    return keras
