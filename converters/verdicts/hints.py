"""What a model says about its outputs (:class:`OutputSpec`), read from a
.tflite flatbuffer or a Keras model: names, shapes, output activation,
training loss, quantization step.

Example:
    >>> specs_from_tflite(info, feeds)
    [OutputSpec(name='probs', shape=(10,), activation='softmax', ...)]
"""

from __future__ import annotations

import re

from converters.verdicts.tasks import OutputSpec

# ops that pass values through unchanged in meaning (walked back over)
_PASS = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
         "CAST", "IDENTITY")
_ACTIVATION_OPS = {"SOFTMAX": "softmax", "LOG_SOFTMAX": "log_softmax",
                   "LOGISTIC": "sigmoid", "L2_NORMALIZATION": "l2_normalize",
                   "TANH": "tanh", "RELU": "relu", "RELU6": "relu6"}


def tflite_activation(info, tensor: int) -> str | None:
    """The activation op that produced ``tensor`` (through reshapes and
    (de)quantization), e.g. ``softmax``; ``None`` when there is none."""
    producers = {o: op for op in info.operators for o in op.outputs}
    seen = set()
    while tensor in producers and tensor not in seen:
        seen.add(tensor)
        op = producers[tensor]
        if op.name in _ACTIVATION_OPS:
            return _ACTIVATION_OPS[op.name]
        if op.name not in _PASS or not op.inputs:
            return "linear"
        tensor = op.inputs[0]
    return None


def specs_from_tflite(info, feeds) -> list[OutputSpec]:
    """One spec per output of a parsed model, named as ``feeds`` names it."""
    out = []
    for port in feeds.outputs:
        lsb = port.lsb
        if lsb is None:  # float output behind a DEQUANTIZE: that step
            for op in info.operators:
                if port.index in op.outputs and op.name == "DEQUANTIZE":
                    src = info.tensors[op.inputs[0]]
                    lsb = src.scale[0] if src.scale else None
        out.append(OutputSpec(name=port.name, shape=port.sample_shape,
                              activation=tflite_activation(info, port.index),
                              lsb=lsb))
    return out


def _loss_name(loss) -> str | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    for attr in ("name", "__name__"):
        value = getattr(loss, attr, None)
        if isinstance(value, str):
            return value
    name = type(loss).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _losses(model, names: list[str]) -> dict[str, str | None]:
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        return {n: _loss_name(loss.get(n)) for n in names}
    if isinstance(loss, (list, tuple)):
        return {n: _loss_name(v) for n, v in zip(names, loss)}
    return {n: _loss_name(loss) for n in names}


def _layer_activation(layer) -> str | None:
    kind = type(layer).__name__
    if kind in ("Softmax", "UnitNormalization"):
        return "softmax" if kind == "Softmax" else "l2_normalize"
    if kind == "Activation" or hasattr(layer, "activation"):
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", None) or (act if isinstance(act, str)
                                                  else None)
        return name
    return None


def keras_output_names(model) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    outputs = model.outputs if isinstance(getattr(model, "outputs", None),
                                          (list, tuple)) else []
    if len(names) != len(outputs):
        names = [f"output_{k}" for k in range(len(outputs))] or ["output_0"]
    return names


def specs_from_keras(model) -> list[OutputSpec]:
    """One spec per Keras output: name, per-sample shape, the output layer's
    activation, the compiled loss."""
    names = keras_output_names(model)
    losses = _losses(model, names)
    outputs = list(getattr(model, "outputs", None) or [])
    specs = []
    for k, name in enumerate(names):
        layer = None
        if k < len(outputs):
            history = getattr(outputs[k], "_keras_history", None)
            layer = getattr(history, "layer", None) or (
                history[0] if isinstance(history, tuple) and history
                else None)
        shape = tuple(outputs[k].shape[1:]) if k < len(outputs) else ()
        specs.append(OutputSpec(
            name=name, shape=tuple(int(s) if s is not None else -1
                                   for s in shape),
            activation=_layer_activation(layer) if layer is not None
            else None, loss=losses.get(name)))
    return specs
