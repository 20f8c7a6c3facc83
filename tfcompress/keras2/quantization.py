"""Quantization-aware training: ``quantize`` wraps, conversion consumes.

Default int8 QAT (per-channel weights, per-tensor activations) through tfmot,
selective (only some layers), and the collaborative schemes that keep what
earlier stages made: pruning-preserving (PQAT), cluster-preserving (CQAT) and
both (PCQAT). What to preserve is detected from the weights by default.

A QAT model is not stripped before conversion: its fake-quant ranges are what
the converter turns into int8 scales.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

from tfcompress.keras2 import fakequant, selection
from tfcompress.analysis import stats
from tfcompress.keras2.nesting import flatten
from tfcompress.keras2.env import keras, tfmot

from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_wrapper)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E501
    prune_preserve_quantize_registry)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E501
    default_8bit_quantize_registry, default_8bit_quantize_scheme)

_q = tfmot.quantization.keras
_collab = tfmot.experimental.combine

PRESERVE = ("sparsity", "clusters")
#: a model whose kernels are this sparse is taken as pruned by ``"auto"``.
AUTO_SPARSITY = 0.3
#: kernels with at most this many unique values are taken as clustered.
AUTO_CLUSTERS = 64


def detect_preserve(model) -> tuple:
    """What collaborative QAT should preserve, read from the kernels."""
    rows = [r for r in stats.kernel_stats(model) if r.size > 4 * AUTO_CLUSTERS]
    if not rows:
        return ()
    found = []
    if min(r.sparsity for r in rows) >= AUTO_SPARSITY:
        found.append("sparsity")
    if max(r.unique for r in rows) <= AUTO_CLUSTERS:
        found.append("clusters")
    return tuple(found)


def scheme_for(preserve: Iterable[str]):
    """The tfmot quantize scheme that preserves ``preserve``."""
    preserve = tuple(preserve)
    unknown = set(preserve) - set(PRESERVE)
    if unknown:
        raise ValueError(f"quantize: unknown preserve {sorted(unknown)}; "
                         f"valid: {list(PRESERVE)}.")
    if "clusters" in preserve:
        return _collab.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity="sparsity" in preserve)
    if "sparsity" in preserve:
        return _collab.Default8BitPrunePreserveQuantizeScheme()
    return default_8bit_quantize_scheme.Default8BitQuantizeScheme()


SCHEME_NAMES = {(): "QAT", ("sparsity",): "PQAT", ("clusters",): "CQAT",
                ("sparsity", "clusters"): "PCQAT"}


def _supported(layer) -> bool:
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    return registry.supports(layer)


def quantize(model, *, preserve: Union[str, Iterable[str]] = "auto",
             layers: Optional[Iterable] = None,
             skip: Optional[Iterable] = None,
             report: Optional[selection.CompressionReport] = None,
             weight_bits: int = 8, keep_first_last: bool = True):
    """Wrap ``model`` for int8 quantization-aware training.

    Args:
        model: a Sequential or Functional model, plain or stripped after
            pruning/clustering (strip first: ``tfcompress.strip``).
        preserve: ``"auto"`` (detect from the weights), ``()`` / ``"none"``,
            or any of ``("sparsity", "clusters")``: PQAT, CQAT, PCQAT.
        layers: quantize only these layers (selective QAT); others stay float
            in training and are calibrated by the converter.
        skip: layers never to annotate.
        report: a :class:`CompressionReport` to append to.
        weight_bits: 2..7 trains Dense/Conv kernels on a ``weight_bits``
            grid inside the int8 fake-quant (:func:`tfcompress.lowbit.nbit_scheme`):
            the int8 model then holds at most ``2**weight_bits - 1`` values
            per channel (LUT-compressible for TFLM). Plain QAT only.
        keep_first_last: with ``weight_bits < 8``, keep the first and last
            Dense/Conv layers at 8 bits.

    Returns:
        The QAT model; ``model.qat_scheme`` names the scheme used. Layer names
        are kept (no ``quant_`` prefix), so app code that looks up layers or
        outputs by name keeps working.

    Example:
        >>> qat = quantize(tfcompress.strip(pruned))   # PQAT, auto-detected
    """
    selection.check_functional(model, "quantize")
    if weight_bits != 8 and preserve == "auto":
        preserve = ()  # n-bit QAT retrains every kernel on its grid
    if preserve == "auto":
        preserve = detect_preserve(model)
    elif preserve in ("none", None):
        preserve = ()
    elif isinstance(preserve, str):
        preserve = (preserve,)
    preserve = tuple(p for p in PRESERVE if p in preserve) + tuple(
        p for p in preserve if p not in PRESERVE)
    scheme = scheme_for(preserve)
    if weight_bits != 8:
        from tfcompress.keras2 import lowbit
        if preserve:
            raise ValueError(
                f"quantize: weight_bits={weight_bits} retrains every kernel "
                f"on a {weight_bits}-bit grid and cannot preserve "
                f"{list(preserve)}; pass preserve=() or weight_bits=8.")
        keep = lowbit.first_last_names(model) if keep_first_last else ()
        scheme = lowbit.nbit_scheme(weight_bits, scheme, keep)
    report = report if report is not None else selection.CompressionReport()

    # tfmot cannot quantize nested models: apply_to_layers flattens them
    folded = _batchnorms_after_conv(flatten(model))
    scheme = _consistent(scheme)
    registry = scheme.get_quantize_registry()

    def decide(layer):
        if selection.matches(layer, skip) or (
                layers is not None and not selection.matches(layer, layers)):
            return layer, selection.SKIP_USER
        if type(layer) in EXTRA_CONFIGS:
            config = EXTRA_CONFIGS[type(layer)](preserve)
            if config is None:
                return _freeze(layer, preserve)
            return _q.quantize_annotate_layer(layer, config), None
        if layer.name in folded:
            # tfmot folds Conv+BN(+ReLU) into the conv during QAT
            return _q.quantize_annotate_layer(layer), None
        if not registry.supports(layer):
            if preserve and stats._kernel_weights(layer):
                return _freeze(layer, preserve)
            return layer, ("no QAT support; float in training, "
                           "int8 by the converter's calibration")
        return _q.quantize_annotate_layer(layer), None

    annotated, report = selection.apply_to_layers(model, decide, "quantize",
                                                  report)
    with quantize_scope():
        qat = _q.quantize_apply(annotated, scheme,
                                quantized_layer_name_prefix="")
    fakequant.speed_up(qat)
    qat.compression_report = report
    qat.qat_scheme = SCHEME_NAMES.get(preserve, "QAT") + (
        f" {weight_bits}-bit weights" if weight_bits != 8 else "")
    return qat


class _ConsistentRegistry:
    """A collaborative registry that claims only layers the default 8-bit
    registry can configure: tfmot's prune/cluster-preserving registries
    claim Embedding, MaxPooling1D & co. and then fail with a raw
    ``get_quantize_config() called on an unsupported layer`` when such a
    layer feeds a quantized one; those layers stay as they are instead."""

    def __init__(self, inner):
        self._inner = inner

    def supports(self, layer) -> bool:
        return self._inner.supports(layer) and _supported(layer)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _consistent(scheme):
    registry = _ConsistentRegistry(scheme.get_quantize_registry())
    scheme.get_quantize_registry = lambda: registry
    return scheme


class Conv1DQuantizeConfig(
        default_8bit_quantize_registry.Default8BitQuantizeConfig):
    """Conv1D has no tfmot QuantizeConfig: per-tensor int8 kernel and int8
    activation, as tfmot does for Dense; with ``preserve_sparsity`` the
    kernel goes through tfmot's sparsity-preserving weight quantizer (PQAT).
    """

    def __init__(self, preserve_sparsity: bool = False):
        super().__init__(["kernel"], ["activation"], False)
        self.preserve_sparsity = bool(preserve_sparsity)
        if self.preserve_sparsity:
            self.weight_quantizer = (
                prune_preserve_quantize_registry
                .PrunePreserveDefault8BitWeightsQuantizer())

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _conv1d_config(preserve: tuple):
    """No cluster-preserving variant exists (``None``: freeze the layer)."""
    if "clusters" in preserve:
        return None
    return Conv1DQuantizeConfig("sparsity" in preserve)


def _freeze(layer, preserve: tuple):
    """A layer collaborative QAT cannot handle keeps its weights as they
    are (training would regrow pruned zeros or break the clusters)."""
    layer.trainable = False
    return layer, (f"no {'/'.join(preserve)}-preserving QAT for this layer: "
                   "frozen, int8 by the converter's calibration")


#: QuantizeConfigs for layers tfmot's registry lacks.
EXTRA_CONFIGS = {keras.layers.Conv1D: _conv1d_config}


def _batchnorms_after_conv(model) -> set:
    """Names of BatchNormalization layers fed by a Conv2D/DepthwiseConv2D:
    tfmot folds those into the conv; others it cannot quantize."""
    names = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        inbound = [l for node in layer._inbound_nodes
                   for l in _as_list(node.inbound_layers)]
        if inbound and all(isinstance(l, (keras.layers.Conv2D,
                                          keras.layers.DepthwiseConv2D))
                           for l in inbound):
            names.add(layer.name)
    return names


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def is_quantized(model) -> bool:
    return any(isinstance(l, quantize_wrapper.QuantizeWrapper)
               for l in model.layers)


def quantize_scope():
    """Scope to load a saved QAT model."""
    return _q.quantize_scope({"Conv1DQuantizeConfig": Conv1DQuantizeConfig})
