"""Rebuild a ``.keras`` file saved by Keras 3 as a ``tf_keras`` (Keras 2)
model: opt-in (``tfcompress.load_keras3``), for the techniques only the
tfmot path has (channel pruning, low rank, distillation). Loading a file
(:func:`converters.load_model`, the CLI) keeps it a Keras 3 model.

tensorflow-model-optimization only works with ``tf_keras``; a model saved by
Keras 3 (``keras>=3``) is a zip of ``config.json`` (Keras 3 layer configs),
``model.weights.h5`` and ``metadata.json``. :func:`load` translates each
standard layer's config (``batch_shape``, dtype-policy dicts, the
``module``/``registered_name`` wrappers, options tf_keras lacks), rebuilds
the Sequential or Functional model with tf_keras, and loads the weights in
order. A layer it cannot translate fails with one line naming it.

Example:
    >>> if is_keras3_file("model.keras"):
    ...     model = load("model.keras")     # a tfcompress.keras model
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import zipfile
from typing import Any, Dict, List

from converters.loading.kerasenv import keras

__all__ = ["Keras3Error", "SUPPORTED_LAYERS", "is_keras3_file", "load"]

#: Keras 3 layer classes this module translates (same name in tf_keras).
SUPPORTED_LAYERS = frozenset({
    "InputLayer", "Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
    "Conv2DTranspose", "DepthwiseConv1D", "DepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D", "BatchNormalization",
    "LayerNormalization", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
    "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Reshape",
    "Permute", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Add",
    "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "Embedding", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
    "Cropping2D", "UpSampling1D", "UpSampling2D", "Rescaling",
})
# Options whose values only matter for training a fresh layer: dropped (the
# weights come from the file; tf_keras defaults are used).
_INITIALIZER = re.compile(r".*_initializer$")
_BASE_KWARGS = {"name", "trainable", "dtype", "input_shape",
                "batch_input_shape", "batch_size", "input_dim", "dynamic"}


class Keras3Error(ValueError):
    """A Keras 3 file or layer that cannot be rebuilt with tf_keras."""


def _read(path: str, member: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        if member not in zf.namelist():
            raise Keras3Error(f"{path}: no {member} in the .keras archive; "
                              "re-save the model with keras.Model.save")
        return zf.read(member)


def is_keras3_file(path) -> bool:
    """True for a ``.keras`` zip whose ``metadata.json`` says Keras 3."""
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        return False
    try:
        meta = json.loads(_read(path, "metadata.json"))
    except (Keras3Error, ValueError):
        return False
    return str(meta.get("keras_version", "")).startswith("3")


def _plain(obj: Any) -> Any:
    """Drop Keras 3 ``module``/``registered_name``/``shared_object_id``
    wrappers, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()
                if k not in ("module", "registered_name", "shared_object_id")}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _dtype(value):
    if isinstance(value, dict):   # DTypePolicy / FloatDTypePolicy
        return value.get("config", {}).get("name", "float32")
    return value


def _accepted(cls) -> set:
    """Argument names of ``cls`` and of the bases its ``**kwargs`` reach."""
    names = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and klass is not object:
            params = inspect.signature(klass.__init__).parameters
            names |= {p for p, v in params.items() if p != "self" and
                      v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
    return names


def translate_layer(class_name: str, config: dict, path: str = "") -> dict:
    """A tf_keras config for one Keras 3 layer config.

    Raises:
        Keras3Error: the class is not supported or an option is set that
            tf_keras lacks; the message names the layer.
    """
    name = config.get("name", "?")
    where = f"{path}: " if path else ""
    if class_name not in SUPPORTED_LAYERS:
        raise Keras3Error(
            f"{where}layer {name!r} ({class_name}) cannot be translated to "
            f"tf_keras; supported layers: {', '.join(sorted(SUPPORTED_LAYERS))}")
    cls = getattr(keras.layers, class_name)
    out = {}
    for key, value in _plain(config).items():
        if key == "dtype":
            value = _dtype(config["dtype"])
        elif key == "batch_shape":
            key = "batch_input_shape"
        elif _INITIALIZER.match(key):
            continue
        out[key] = value
    accepted = _accepted(cls)
    for key in sorted(set(out) - accepted):
        if out[key] in (None, False, 0, "", [], {}):
            del out[key]       # e.g. lora_rank: null, optional: false
        else:
            raise Keras3Error(
                f"{where}layer {name!r} ({class_name}): option {key}="
                f"{out[key]!r} has no tf_keras equivalent; re-save the model "
                "without it")
    try:
        cls.from_config(dict(out))
    except Exception as exc:   # an option value tf_keras does not accept
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Keras3Error(f"{where}layer {name!r} ({class_name}): cannot "
                          f"build it with tf_keras: {first}") from None
    return {"class_name": class_name, "config": out}


def _snake(name: str) -> str:
    """Keras 3's ``naming.to_snake_case`` (the keys of model.weights.h5)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _weight_keys(class_names: List[str]) -> List[str]:
    """h5 group of each layer: its snake-cased class, numbered in order."""
    used: Dict[str, int] = {}
    keys = []
    for cn in class_names:
        key = _snake(cn)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys.append(key)
    return keys


def _history_key(t: dict) -> tuple:
    name, node, index = t["config"]["keras_history"]
    return name, int(node), int(index)


def _resolve(obj, tensors: dict):
    if isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
        return tensors[_history_key(obj)]
    if isinstance(obj, list):
        return [_resolve(v, tensors) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, tensors) for v in obj)
    if isinstance(obj, dict):
        return {k: _resolve(v, tensors) for k, v in obj.items()}
    return obj


def _ready(obj, tensors: dict) -> bool:
    if isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
        return _history_key(obj) in tensors
    if isinstance(obj, (list, tuple)):
        return all(_ready(v, tensors) for v in obj)
    if isinstance(obj, dict):
        return all(_ready(v, tensors) for v in obj.values())
    return True


def _refs(spec) -> List[tuple]:
    if spec and isinstance(spec[0], str):
        return [tuple(spec)]
    return [tuple(s) for s in spec]


def _check_nested(entries: List[dict], path: str) -> None:
    for e in entries:
        if e["class_name"] in ("Functional", "Sequential", "Model"):
            raise Keras3Error(
                f"{path}: layer {e['config'].get('name')!r} is a nested "
                f"{e['class_name']} model, which is not supported; save the "
                "model flattened (one Sequential or Functional)")


def _functional(config: dict, path: str):
    entries = config["layers"]
    _check_nested(entries, path)
    layers, tensors, calls = {}, {}, {}
    for e in entries:
        spec = translate_layer(e["class_name"], e["config"], path)
        if e["class_name"] == "InputLayer":
            cfg = spec["config"]
            inp = keras.Input(batch_shape=cfg["batch_input_shape"],
                              dtype=cfg.get("dtype"), name=cfg["name"],
                              sparse=cfg.get("sparse", False),
                              ragged=cfg.get("ragged", False))
            tensors[(e["name"], 0, 0)] = inp
            layers[e["name"]] = inp.node.layer
        else:
            layers[e["name"]] = keras.layers.deserialize(spec)
        calls[e["name"]] = 0
    pending = [(e, n) for e in entries if e["class_name"] != "InputLayer"
               for n in e.get("inbound_nodes", [])]
    while pending:
        progressed = False
        rest = []
        for e, node in pending:
            args, kwargs = node.get("args", []), node.get("kwargs", {})
            if not (_ready(args, tensors) and _ready(kwargs, tensors)):
                rest.append((e, node))
                continue
            out = layers[e["name"]](*_resolve(args, tensors),
                                    **_resolve(kwargs, tensors))
            outs = out if isinstance(out, (list, tuple)) else [out]
            for i, t in enumerate(outs):
                tensors[(e["name"], calls[e["name"]], i)] = t
            calls[e["name"]] += 1
            progressed = True
        if not progressed:
            names = sorted({e["name"] for e, _ in rest})
            raise Keras3Error(f"{path}: cannot connect layer(s) {names}: "
                              "their inputs are never produced")
        pending = rest
    inputs = [tensors[r] for r in _refs(config["input_layers"])]
    outputs = [tensors[r] for r in _refs(config["output_layers"])]
    single_in = isinstance(config["input_layers"][0], str)
    single_out = isinstance(config["output_layers"][0], str)
    return keras.Model(inputs[0] if single_in else inputs,
                       outputs[0] if single_out else outputs,
                       name=config.get("name"))


def _sequential(config: dict, path: str):
    entries = config["layers"]
    _check_nested(entries, path)
    model = keras.Sequential(name=config.get("name"))
    order = []
    build_shape = None
    for e in entries:
        spec = translate_layer(e["class_name"], e["config"], path)
        if e["class_name"] == "InputLayer":
            model.add(keras.layers.InputLayer(**spec["config"]))
            continue
        layer = keras.layers.deserialize(spec)
        if build_shape is None and not order:
            build_shape = (e.get("build_config") or {}).get("input_shape")
        model.add(layer)
        order.append((layer, e["class_name"]))
    if not model.built:
        if build_shape is None:
            raise Keras3Error(f"{path}: the Sequential model has no input "
                              "shape; build it before saving")
        model.build(tuple(build_shape))
    return model, order


def _load_weights(path: str, order, prefix: str = "layers") -> None:
    import h5py
    data = _read(path, "model.weights.h5")
    keys = _weight_keys([cn for _, cn in order])
    with h5py.File(io.BytesIO(data), "r") as h5:
        for (layer, _), key in zip(order, keys):
            group = h5.get(f"{prefix}/{key}/vars")
            stored = [] if group is None else \
                [group[str(i)][()] for i in range(len(group))]
            want = [tuple(w.shape) for w in layer.weights]
            got = [tuple(v.shape) for v in stored]
            if want != got:
                raise Keras3Error(
                    f"{path}: layer {layer.name!r}: weights in "
                    f"model.weights.h5 ({prefix}/{key}) have shapes {got}, "
                    f"the rebuilt tf_keras layer expects {want}")
            if stored:
                layer.set_weights(stored)


def load(path) -> keras.Model:
    """Rebuild the Keras 3 model saved at ``path`` as a tf_keras model.

    Args:
        path: a ``.keras`` file saved by Keras 3 (``model.save``).

    Returns:
        A ``tfcompress.keras`` Sequential or Functional model with the
        file's weights (not compiled).

    Raises:
        Keras3Error: a layer cannot be translated; the message names it.

    Example:
        >>> model = load("keras3_model.keras")
        >>> model.predict(x)
    """
    path = os.fspath(path)
    top = json.loads(_read(path, "config.json"))
    kind = top.get("class_name")
    config = top.get("config", {})
    if kind in ("Functional", "Model") and "layers" in config:
        model = _functional(config, path)
        # Functional models save their InputLayers among the layers
        order = [(model.get_layer(e["name"]), e["class_name"])
                 for e in config["layers"]]
    elif kind == "Sequential":
        model, order = _sequential(config, path)
    else:
        raise Keras3Error(
            f"{path}: top-level {kind!r} is not a Sequential or Functional "
            "model (subclassed models carry code and cannot be translated)")
    _load_weights(path, order)
    return model
