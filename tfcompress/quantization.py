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

from tfcompress import selection, stats
from tfcompress._keras import keras, tfmot

from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_wrapper)
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
             report: Optional[selection.CompressionReport] = None):
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

    Returns:
        The QAT model; ``model.qat_scheme`` names the scheme used. Layer names
        are kept (no ``quant_`` prefix), so app code that looks up layers or
        outputs by name keeps working.

    Example:
        >>> qat = quantize(tfcompress.strip(pruned))   # PQAT, auto-detected
    """
    selection.check_functional(model, "quantize")
    if preserve == "auto":
        preserve = detect_preserve(model)
    elif preserve in ("none", None):
        preserve = ()
    elif isinstance(preserve, str):
        preserve = (preserve,)
    preserve = tuple(p for p in PRESERVE if p in preserve) + tuple(
        p for p in preserve if p not in PRESERVE)
    scheme = scheme_for(preserve)
    report = report if report is not None else selection.CompressionReport()

    def decide(layer):
        if isinstance(layer, keras.Model):
            return layer, ("nested model: call tfcompress.flatten(model) "
                           "first; tfmot cannot quantize nested models")
        if selection.matches(layer, skip) or (
                layers is not None and not selection.matches(layer, layers)):
            return layer, selection.SKIP_USER
        if not _supported(layer):
            return layer, ("no QAT support; float in training, "
                           "int8 by the converter's calibration")
        return _q.quantize_annotate_layer(layer), None

    annotated, report = selection.apply_to_layers(model, decide, "quantize",
                                                  report)
    for entry in report.entries:
        if entry.status == "skipped" and entry.reason.startswith("nested"):
            raise ValueError(
                f"quantize: layer {entry.name!r} is a nested model; tfmot "
                "cannot quantize nested models. Call "
                "tfcompress.flatten(model) first.")
    with _q.quantize_scope():
        qat = _q.quantize_apply(annotated, scheme,
                                quantized_layer_name_prefix="")
    qat.compression_report = report
    qat.qat_scheme = SCHEME_NAMES.get(preserve, "QAT")
    return qat


def is_quantized(model) -> bool:
    return any(isinstance(l, quantize_wrapper.QuantizeWrapper)
               for l in model.layers)


def quantize_scope():
    """Scope to load a saved QAT model."""
    return _q.quantize_scope()
