"""The float reference a converted model is judged against, output by name.

A reference is a Keras model (or anything with Keras' ``predict``, such as
:class:`~converters.conversion.modes.SavedModelPredictor`), a float
``.tflite`` (run in LiteRT, streaming ones over the same sequences), or
outputs computed already (``{name: array}``). Its outputs are matched to the
converted model's by name, else by shape, else by position.

Example:
    >>> refs = outputs(keras_model, [x], names=["probs"])
    >>> keys = match(refs, feeds.outputs)  # reference name per output
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from converters.runtimes import feeds as feeding, litert


def _keras_names(model, n: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == n else [f"output_{k}" for k in range(n)]


def outputs(reference, xs: Sequence[np.ndarray], *, stateful: bool = False,
            input_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """``{name: [N, ...] float array}`` of ``reference`` on ``xs`` (float
    data, one array per input; ``[S, T, ...]`` for a streaming model)."""
    if isinstance(reference, Mapping):
        return {k: np.asarray(v) for k, v in reference.items()}
    if isinstance(reference, (bytes, bytearray)):
        return _tflite_outputs(bytes(reference), xs, input_names)
    if stateful:
        raise ValueError("a streaming (stateful) model is compared with a "
                         "float .tflite reference run over the same "
                         "sequences; give --reference FLOAT.tflite")
    data = [np.asarray(x, np.float32) if np.issubdtype(
        np.asarray(x).dtype, np.floating) else np.asarray(x) for x in xs]
    pred = reference.predict(_keras_feed(reference, data, input_names),
                             verbose=0, batch_size=256)
    if isinstance(pred, Mapping):
        return {k: np.asarray(v) for k, v in pred.items()}
    if isinstance(pred, (list, tuple)):
        return dict(zip(_keras_names(reference, len(pred)),
                        (np.asarray(p) for p in pred)))
    return {_keras_names(reference, 1)[0]: np.asarray(pred)}


def _keras_feed(model, data: list, input_names: Sequence[str]):
    """One array, or several keyed by the Keras input names when the
    .tflite's input names are those (its inputs may come in another
    order), else in order."""
    if len(data) == 1:
        return data[0]
    keras_names = [getattr(t, "name", "").split(":")[0] for t in
                   getattr(model, "inputs", None) or []]
    names = list(getattr(model, "input_names", None) or keras_names)
    if len(input_names) == len(data) and set(input_names) == set(names):
        return dict(zip(input_names, data))
    return data


def _tflite_outputs(tflite: bytes, xs, input_names) -> dict[str, np.ndarray]:
    from converters.tflite import flatbuffer
    feeds = feeding.Feeds.of(flatbuffer.read(tflite))
    data = dict(zip(input_names, xs)) if len(input_names) == len(xs) and \
        set(input_names) == set(feeds.input_names) else list(xs)
    raw = litert.run_feeds(tflite, feeds.prepare(data),
                           stateful=feeds.stateful)
    return dict(zip(feeds.output_names, feeds.dequantize(raw)))


def match(refs: Mapping[str, np.ndarray], ports: Sequence[feeding.Port], *,
          steps: int | None = None) -> list[str]:
    """The reference output name for each of the model's outputs: by name
    when every name matches, else by per-sample size when sizes are unique,
    else by position. ``steps``: the model is streaming, and references come
    as ``[S, T, ...]``."""
    names = [p.name for p in ports]
    if len(refs) != len(ports):
        raise ValueError(f"the reference has {len(refs)} output(s) "
                         f"{sorted(refs)} but the model has {len(ports)} "
                         f"{names}")
    if set(refs) == set(names):
        return names
    lead = 2 if steps else 1
    ref_sizes = {k: int(np.prod(np.asarray(a).shape[lead:]))
                 for k, a in refs.items()}
    port_sizes = [int(np.prod(p.sample_shape)) for p in ports]
    if len(set(port_sizes)) == len(port_sizes) and \
            sorted(ref_sizes.values()) == sorted(port_sizes):
        by_size = {v: k for k, v in ref_sizes.items()}
        return [by_size[s] for s in port_sizes]
    return list(refs)


def generic(name: str) -> bool:
    """A name the model file did not carry (``output_0``, ...)."""
    return name.startswith("output_") and name[7:].isdigit()
