"""``strip`` for Keras 3: wrapped training model -> plain Keras 3 layers.

Pruning and clustering wrappers become their layer again, holding the
weights the wrapper computed with (zeros, clustered values). QAT wrappers
stay (their fake-quant ranges are what the converter turns into int8); a
PQAT/CQAT/PCQAT wrapper is baked: the preserved weights are written into
the layer, so the converter folds them into int8 constants.
"""

from __future__ import annotations

import keras
import numpy as np

from tfcompress.keras3.base import (WeightWrapper, check_model, copy_layer,
                                    resolve, walk)


def plain_layer(wrapper: WeightWrapper):
    """A copy of the wrapped layer holding the effective weights."""
    inner = wrapper.layer
    while isinstance(inner, WeightWrapper):  # defensive: nested wrappers
        inner = inner.layer
    new = copy_layer(inner)
    for name, value in wrapper.effective_weights().items():
        resolve(new, name).assign(value)
    return new


def _strippable(layer) -> bool:
    from tfcompress.keras3.quantizers import QuantizeWrapper
    if isinstance(layer, QuantizeWrapper):
        return bool(layer.preserve)
    return isinstance(layer, WeightWrapper)


def strip(model):
    """Remove pruning and clustering wrappers, keeping their effect.

    Example:
        >>> deployable = strip(model)
    """
    if not any(_strippable(l) for l in walk(model)):
        return model
    check_model(model, "strip")

    def clone_fn(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return type(layer).from_config(layer.get_config())
        if _strippable(layer):
            return layer.baked() if isinstance(layer, QuantizeWrapper) \
                else plain_layer(layer)
        return copy_layer(layer)

    from tfcompress.keras3.quantizers import QuantizeWrapper
    out = keras.models.clone_model(model, clone_function=clone_fn,
                                   recursive=True)
    for layer in walk(out):
        if isinstance(layer, QuantizeWrapper) and hasattr(layer, "_ranges"):
            layer.initialize()
    for attr in ("compression_report", "qat_scheme"):
        if getattr(model, attr, None) is not None:
            setattr(out, attr, getattr(model, attr))
    return out


def kernel_arrays(model):
    """``[(layer name, weight name, numpy value)]`` of every kernel, as the
    layer computes with it (wrapped or not)."""
    from tfcompress.keras3.selection import kernel_names
    out = []
    for layer in walk(model):
        if isinstance(layer, WeightWrapper):
            eff = layer.effective_weights()
            for name in kernel_names(layer.layer):
                value = eff.get(name)
                if value is None:
                    value = keras.ops.convert_to_numpy(
                        resolve(layer.layer, name).value)
                out.append((layer.name, name, value))
        else:
            for name in kernel_names(layer):
                out.append((layer.name, name, keras.ops.convert_to_numpy(
                    resolve(layer, name).value)))
    return out


def summary(model) -> dict:
    """Overall kernel sparsity and the most unique values per channel."""
    from tfcompress.keras3.selection import channel_axis
    rows, zeros, total, most = [], 0, 0, 0
    layers = {l.name: l for l in walk(model)}
    for lname, wname, value in kernel_arrays(model):
        layer = layers[lname]
        layer = getattr(layer, "layer", layer)
        axis = channel_axis(layer, wname)
        cols = np.moveaxis(value, axis, -1).reshape(-1, value.shape[axis])
        ordered = np.sort(cols, axis=0)  # values per channel, one pass
        unique = int((np.diff(ordered, axis=0) != 0).sum(axis=0).max()) + 1
        zeros += int((value == 0).sum())
        total += value.size
        most = max(most, unique)
        rows.append({"layer": lname, "weight": wname,
                     "sparsity": float((value == 0).mean()),
                     "unique": unique, "size": int(value.size)})
    return {"sparsity": zeros / total if total else 0.0, "max_unique": most,
            "layers": rows}
