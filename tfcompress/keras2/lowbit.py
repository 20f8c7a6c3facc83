"""Low-bit weights: binary, ternary and n-bit, shipped as stock int8 TFLite.

Training side:

* :func:`binarize` wraps kernels in :class:`LowBitWeights`: the forward pass
  uses ``+-alpha`` (``mode="binary"``, ``alpha`` = mean ``|w|`` per output
  channel, XNOR-Net) or ``{-alpha, 0, +alpha}`` (``mode="ternary"``, weights
  below ``threshold * mean|w|`` are zero, ``alpha`` = mean of the rest, TWN)
  while the float weights are trained through a straight-through estimator.
  :func:`strip_lowbit` bakes the quantized kernels into a plain model.
* :func:`nbit_scheme` is the tfmot quantize scheme behind
  ``tfcompress.quantize(model, weight_bits=4)``: kernels are rounded to a
  symmetric ``weight_bits`` grid (per channel where tfmot quantizes per
  channel) inside tfmot's 8-bit fake-quant, so the converter writes an int8
  model whose channels hold at most ``2**bits - 1`` values. (tfmot's own
  ``DefaultNBitQuantizeScheme(num_bits_weight=4)`` converts to packed INT4
  tensors with TF 2.21, not to int8.)

By default the first and last weighted layers stay at 8 bits, as in the
literature. With per-channel int8 conversion (PTQ, or QAT for conv layers)
``+-alpha`` becomes ``+-127`` in every channel; TFLM's LUT compression
(:func:`tfcompress.keras2.lowbit_export.micro_export`) then stores 1-4 bit indices per weight.

Example:
    >>> bin_model = binarize(model, "binary")          # first/last kept 8-bit
    >>> bin_model.compile(...); bin_model.fit(x, y, epochs=10)
    >>> deployable = strip_lowbit(bin_model)            # kernels hold +-alpha
    >>> tflite = converters.convert_bytes(deployable, x[:200])
    >>> small, report = lowbit_export.micro_export(tflite, x_int8)    # 1-bit LUT, TFLM-checked
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from tfcompress.keras2 import selection
from tfcompress.keras2.env import keras, tf, tfmot

__all__ = ["MODES", "LowBitWeights", "LowBitQuantizeConfig",
           "LowBitWeightQuantizer", "binarize", "strip_lowbit", "is_lowbit",
           "first_last_names", "nbit_scheme", "custom_objects"]

MODES = ("binary", "ternary")
#: values per output channel each mode leaves (int8 per-channel: the same).
MODE_VALUES = {"binary": 2, "ternary": 3}

_L = keras.layers
_SUPPORTED = (_L.Dense, _L.Conv1D, _L.Conv2D, _L.Conv3D, _L.DepthwiseConv2D)
_UNSUPPORTED = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose,
                _L.SeparableConv1D, _L.SeparableConv2D)
_q = tfmot.quantization.keras


def _supported(layer) -> bool:
    return isinstance(layer, _SUPPORTED) and not isinstance(layer, _UNSUPPORTED)


def _kernel_attr(layer) -> str:
    return "depthwise_kernel" if isinstance(layer, _L.DepthwiseConv2D) \
        else "kernel"


def _channel_axes(layer, rank: int) -> tuple:
    """Axes reduced to get one value per output channel (as TFLite's
    per-channel quantization sees them)."""
    if isinstance(layer, _L.DepthwiseConv2D):  # [kh, kw, in, mult]
        return (0, 1)
    return tuple(range(rank - 1))


# -- quantizers ---------------------------------------------------------------
def quantize_kernel(w, mode: str, axes: Sequence[int], threshold: float = 0.7):
    """``w`` with binary/ternary values per channel (no gradient trick).

    Example:
        >>> quantize_kernel(tf.constant([[0.5, -1.], [-1.5, 3.]]), "binary", (0,))
        # [[1., -2.], [-1., 2.]]
    """
    mag = tf.abs(w)
    if mode == "binary":
        alpha = tf.reduce_mean(mag, axis=axes, keepdims=True)
        return tf.where(w >= 0, alpha, -alpha)
    if mode == "ternary":
        delta = threshold * tf.reduce_mean(mag, axis=axes, keepdims=True)
        mask = tf.cast(mag > delta, w.dtype)
        alpha = tf.math.divide_no_nan(
            tf.reduce_sum(mag * mask, axis=axes, keepdims=True),
            tf.reduce_sum(mask, axis=axes, keepdims=True))
        return tf.sign(w) * mask * alpha
    raise ValueError(f"Unknown low-bit mode {mode!r}; valid modes: {list(MODES)}")


def uniform_kernel(w, bits: int, axes: Optional[Sequence[int]]):
    """``w`` rounded to a symmetric ``bits`` grid (``2**(bits-1)-1`` steps
    each side of zero), one scale per channel (``axes`` reduced) or, with
    ``axes=None``, per tensor."""
    levels = float(2 ** (bits - 1) - 1)
    m = tf.reduce_max(tf.abs(w), axis=axes, keepdims=axes is not None)
    scale = tf.where(m > 0, m / levels, tf.ones_like(m))
    return tf.round(w / scale) * scale


def _ste(w, q):
    """Forward ``q``, backward identity to ``w`` (straight-through)."""
    return w + tf.stop_gradient(q - w)


# -- binary / ternary wrapper -------------------------------------------------
@keras.utils.register_keras_serializable(package="tfcompress")
class LowBitWeights(keras.layers.Wrapper):
    """Runs ``layer`` with binary or ternary kernels, trains float latents.

    Args:
        layer: a Dense, Conv1D/2D/3D or DepthwiseConv2D layer.
        mode: ``"binary"`` or ``"ternary"``.
        threshold: ternary only: weights with ``|w| <= threshold * mean|w|``
            (per channel) become zero.

    The wrapper keeps the inner layer's name and weights (no extra
    variables), so ``get_weights`` lines up with the unwrapped model.

    Example:
        >>> layer = LowBitWeights(keras.layers.Dense(8), mode="ternary")
    """

    def __init__(self, layer, mode: str = "binary", threshold: float = 0.7,
                 **kwargs):
        if mode not in MODES:
            raise ValueError(f"LowBitWeights: unknown mode {mode!r}; valid "
                             f"modes: {list(MODES)}")
        if not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"LowBitWeights: threshold should be in [0, 1). "
                             f"Got: {threshold!r}")
        if not _supported(layer):
            raise ValueError(
                f"LowBitWeights: layer {layer.name!r} ({type(layer).__name__}) "
                f"is not supported; use one of "
                f"{[c.__name__ for c in _SUPPORTED]}")
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.mode = mode
        self.threshold = float(threshold)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        super().build(input_shape)

    @property
    def _axes(self) -> tuple:
        kernel = getattr(self.layer, _kernel_attr(self.layer))
        return _channel_axes(self.layer, len(kernel.shape))

    def quantized(self, kernel):
        return quantize_kernel(kernel, self.mode, self._axes, self.threshold)

    def call(self, inputs):
        attr = _kernel_attr(self.layer)
        latent = getattr(self.layer, attr)
        # Swap the kernel for the call without Keras attribute tracking (a
        # tracked swap would reorder the layer's weights).
        object.__setattr__(self.layer, attr,
                           _ste(latent, self.quantized(latent)))
        try:
            return self.layer.call(inputs)  # Dense/Conv: no other args
        finally:
            object.__setattr__(self.layer, attr, latent)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def quantized_kernel(self) -> np.ndarray:
        """The kernel the forward pass uses, as a numpy array."""
        return self.quantized(getattr(self.layer, _kernel_attr(self.layer))
                              ).numpy()

    def get_config(self):
        return {**super().get_config(), "mode": self.mode,
                "threshold": self.threshold}


def _weighted_layers(model) -> list:
    return [layer for layer in model.layers if _supported(layer)]


def first_last_names(model) -> tuple:
    """Names of the first and last Dense/Conv layers of ``model``."""
    weighted = _weighted_layers(model)
    return tuple(dict.fromkeys(
        [weighted[0].name, weighted[-1].name])) if weighted else ()


def binarize(model, mode: str = "binary", *, threshold: float = 0.7,
             skip: Optional[Iterable] = None, keep_first_last: bool = True,
             report: Optional[selection.CompressionReport] = None):
    """Wrap Dense/Conv kernels for binary or ternary training (STE).

    Args:
        model: a trained Sequential or Functional ``tfcompress.keras`` model.
        mode: ``"binary"`` (``+-alpha`` per output channel) or ``"ternary"``
            (``{-alpha, 0, +alpha}``).
        threshold: ternary zero threshold, a fraction of mean ``|w|``.
        skip: layers to keep float: names, classes, class names, ``"re:.."``.
        keep_first_last: keep the first and last weighted layers at 8 bits.
        report: a :class:`~tfcompress.selection.CompressionReport` to append to.

    Returns:
        The wrapped model (compile and ``fit`` it); its
        ``compression_report`` lists what was skipped and why.

    Example:
        >>> wrapped = binarize(model, "ternary")
        >>> wrapped.compile(...); wrapped.fit(x, y, epochs=8)
        >>> deployable = strip_lowbit(wrapped)
    """
    if mode not in MODES:
        raise ValueError(f"binarize: unknown mode {mode!r}; valid modes: "
                         f"{list(MODES)}")
    selection.check_functional(model, "binarize")
    keep = first_last_names(model) if keep_first_last else ()

    def decide(layer):
        if selection.matches(layer, skip):
            return layer, selection.SKIP_USER
        if not layer.weights:
            return layer, selection.SKIP_NO_WEIGHTS
        if isinstance(layer, keras.Model):
            return layer, "nested model: binarize its layers separately"
        if not _supported(layer):
            return layer, selection.SKIP_NO_SUPPORT
        if layer.name in keep:
            return layer, selection.SKIP_FIRST_LAST
        return LowBitWeights(layer, mode, threshold), None

    new_model, report = selection.apply_to_layers(model, decide, mode, report)
    new_model.compression_report = report
    if not report.compressed:
        raise ValueError(
            f"binarize: no layer of model {model.name!r} was wrapped "
            f"(skipped: {report.skipped}); pass keep_first_last=False for a "
            "model with two weighted layers or fewer.")
    return new_model


def is_lowbit(model) -> bool:
    return any(isinstance(layer, LowBitWeights) for layer in model.layers)


def strip_lowbit(model):
    """A plain model whose kernels hold the binary/ternary values.

    Example:
        >>> deployable = strip_lowbit(wrapped)
    """
    def clone_fn(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        if not isinstance(layer, LowBitWeights):
            return selection.fresh_copy(layer)
        inner = layer.layer
        kernel = getattr(inner, _kernel_attr(inner))
        values = [layer.quantized_kernel() if w is kernel else w.numpy()
                  for w in inner.weights]
        new = inner.__class__.from_config(inner.get_config())
        new.build(layer.get_input_shape_at(0))
        new.set_weights(values)
        return new

    selection.check_functional(model, "strip_lowbit")
    return keras.models.clone_model(model, clone_function=clone_fn)


# -- n-bit QAT (tfmot scheme) -----------------------------------------------
class LowBitWeightQuantizer(_q.quantizers.Quantizer):
    """Rounds a kernel to a ``weight_bits`` grid (STE), then applies tfmot's
    8-bit ``inner`` quantizer, whose fake-quant the converter turns into
    int8: each channel keeps at most ``2**weight_bits - 1`` int8 values."""

    def __init__(self, inner, weight_bits: int = 4):
        self.inner = inner
        self.weight_bits = int(weight_bits)

    def build(self, tensor_shape, name, layer):
        return self.inner.build(tensor_shape, name, layer)

    def __call__(self, inputs, training, weights, **kwargs):
        per_axis = getattr(self.inner, "per_axis", False)
        axes = tuple(range(len(inputs.shape) - 1)) if per_axis else None
        grid = _ste(inputs, uniform_kernel(inputs, self.weight_bits, axes))
        return self.inner(grid, training, weights, **kwargs)

    def get_config(self):
        return {"inner": keras.utils.serialize_keras_object(self.inner),
                "weight_bits": self.weight_bits}

    @classmethod
    def from_config(cls, config):
        with _q.quantize_scope():
            inner = keras.utils.deserialize_keras_object(config["inner"])
        return cls(inner, config["weight_bits"])


@keras.utils.register_keras_serializable(package="tfcompress")
class LowBitQuantizeConfig(_q.QuantizeConfig):
    """A tfmot ``QuantizeConfig`` whose weight quantizers round to
    ``weight_bits`` (see :class:`LowBitWeightQuantizer`); activations and
    outputs as in ``config``."""

    def __init__(self, config, weight_bits: int = 4):
        if isinstance(config, dict):
            with _q.quantize_scope():
                config = keras.utils.deserialize_keras_object(config)
        self.config = config
        self.weight_bits = int(weight_bits)

    def get_weights_and_quantizers(self, layer):
        return [(w, LowBitWeightQuantizer(q, self.weight_bits))
                for w, q in self.config.get_weights_and_quantizers(layer)]

    def get_activations_and_quantizers(self, layer):
        return self.config.get_activations_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self.config.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        self.config.set_quantize_activations(layer, quantize_activations)

    def get_output_quantizers(self, layer):
        return self.config.get_output_quantizers(layer)

    def get_config(self):
        return {"config": keras.utils.serialize_keras_object(self.config),
                "weight_bits": self.weight_bits}


class _LowBitRegistry(_q.QuantizeRegistry):
    def __init__(self, base, weight_bits: int, keep: Sequence[str]):
        self.base, self.weight_bits, self.keep = base, weight_bits, set(keep)

    def supports(self, layer):
        return self.base.supports(layer)

    def get_quantize_config(self, layer):
        config = self.base.get_quantize_config(layer)
        if layer.name in self.keep or not _supported(layer):
            return config
        return LowBitQuantizeConfig(config, self.weight_bits)


class _LowBitScheme(_q.QuantizeScheme):
    def __init__(self, base, weight_bits: int, keep: Sequence[str]):
        self.base, self.weight_bits, self.keep = base, weight_bits, tuple(keep)

    def get_layout_transformer(self):
        return self.base.get_layout_transformer()

    def get_quantize_registry(self):
        return _LowBitRegistry(self.base.get_quantize_registry(),
                               self.weight_bits, self.keep)


def nbit_scheme(weight_bits: int, base, keep: Sequence[str] = ()):
    """A tfmot quantize scheme: ``base`` with Dense/Conv kernels on a
    ``weight_bits`` grid, except layers named in ``keep`` (8-bit).

    Example:
        >>> scheme = nbit_scheme(4, Default8BitQuantizeScheme(), ("conv1",))
    """
    if not isinstance(weight_bits, int) or not 2 <= weight_bits <= 8:
        raise ValueError(f"weight_bits should be an int in 2..8. Got: "
                         f"{weight_bits!r}")
    return _LowBitScheme(base, weight_bits, keep)


def custom_objects() -> dict:
    return {"LowBitWeights": LowBitWeights,
            "LowBitQuantizeConfig": LowBitQuantizeConfig}
