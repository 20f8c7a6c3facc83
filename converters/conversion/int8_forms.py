"""Int8-friendly forms of Keras 3 ops, used while a model is traced for the
converter.

Keras 3 (TensorFlow backend) writes these layers with ops that have no int8
kernel in TFLite Micro, although the same math has one:

=====================  ===========================  ===========================
layer                  Keras 3 computes             traced here as
=====================  ===========================  ===========================
LayerNormalization     ``x*inv + (-mean*inv + b)``  ``(x - mean)*inv + b``
                       (``NEG``: float only in      (SUB, MUL, ADD: int8)
                       TFLM, so the int8 model
                       keeps a float op)
Embedding              ``gather(E, where(i < 0,     ``gather(E, i)`` (token ids
                       i + n, i))`` (``SELECT``:    are in ``[0, n)``; a
                       not in TFLM)                 negative id is not a token)
UpSampling1D/2D        ``repeat`` along each axis   nearest-neighbour resize
(nearest)              (``TILE``: not in TFLM)      (``RESIZE_NEAREST_NEIGHBOR``
                                                    without half-pixel centres:
                                                    output ``i`` reads input
                                                    ``floor(i / factor)``)
=====================  ===========================  ===========================

Each form is the same function of the layer's weights for every valid
input (``tests/test_int8_forms.py`` checks the traced values against the
Keras layer); they apply only inside :func:`int8_forms`, so training and the
user's model are untouched. tf_keras layers are not affected (tf_keras'
LayerNormalization already traces without ``NEG``).

Example:
    >>> with int8_forms():
    ...     fn = tf.function(model).get_concrete_function(spec)
"""

from __future__ import annotations

import contextlib

__all__ = ["int8_forms"]


def _layer_norm(original):
    def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=None,
                            rms_scaling=False):
        from keras.src import backend
        if rms_scaling or backend.backend() != "tensorflow":
            return original(x, gamma=gamma, beta=beta, axis=axis,
                            epsilon=epsilon, rms_scaling=rms_scaling)
        import tensorflow as tf
        if epsilon is None:
            epsilon = backend.epsilon()
        dtype = x.dtype
        x = tf.cast(x, tf.float32) if dtype != tf.float32 else x
        axes = sorted([axis] if isinstance(axis, int) else list(axis))
        ndims = len(x.shape)
        shape = [1] * ndims
        for dim in axes:
            shape[dim] = x.shape[dim]

        def broadcast(v):
            if v is None:
                return None
            v = tf.cast(v, x.dtype)
            if len(v.shape) != ndims and axes != [ndims - 1]:
                v = tf.reshape(v, shape)
            return v

        mean, variance = tf.nn.moments(x, axes=axes, keepdims=True)
        inv = tf.math.rsqrt(variance + epsilon)
        gamma, beta = broadcast(gamma), broadcast(beta)
        if gamma is not None:
            inv = inv * gamma
        out = (x - mean) * inv
        if beta is not None:
            out = out + beta
        return tf.cast(out, dtype) if out.dtype != dtype else out
    return layer_normalization


def _embedding_call(original):
    def call(self, inputs):
        if getattr(self, "quantization_mode", None) or getattr(
                self, "_quantization_mode", None):
            return original(self, inputs)   # Keras' own quantized paths
        import tensorflow as tf
        if inputs.dtype not in (tf.int32, tf.int64):
            inputs = tf.cast(inputs, tf.int32)
        out = tf.gather(self.embeddings, inputs, axis=0)
        return tf.cast(out, self.compute_dtype)
    return call


def _nearest(x, factors):
    """``x`` [N, H, W, C] repeated ``factors`` times along H and W as one
    nearest-neighbour resize; None where a spatial size is not static."""
    import tensorflow as tf
    size = [d * f if d is not None else None
            for d, f in zip(x.shape[1:3], factors)]
    if None in size:
        return None
    return tf.raw_ops.ResizeNearestNeighbor(
        images=x, size=size, align_corners=False, half_pixel_centers=False)


def _up_sampling_2d(original):
    def resize_images(self, x, height_factor, width_factor, data_format,
                      interpolation="nearest"):
        from keras.src import backend
        if (interpolation == "nearest" and data_format == "channels_last"
                and backend.backend() == "tensorflow" and len(x.shape) == 4):
            out = _nearest(x, (height_factor, width_factor))
            if out is not None:
                return out
        return original(self, x, height_factor, width_factor, data_format,
                        interpolation=interpolation)
    return resize_images


def _up_sampling_1d(original):
    def call(self, inputs):
        from keras.src import backend
        if backend.backend() == "tensorflow" and len(inputs.shape) == 3:
            import tensorflow as tf
            out = _nearest(tf.expand_dims(inputs, 2), (self.size, 1))
            if out is not None:
                return tf.squeeze(out, 2)
        return original(self, inputs)
    return call


@contextlib.contextmanager
def int8_forms():
    """Trace Keras 3 LayerNormalization, Embedding and nearest UpSampling
    in their int8-friendly forms inside this block (a no-op where Keras 3
    is not loaded)."""
    try:
        from keras.src.layers.core import embedding
        from keras.src.layers.reshaping import up_sampling1d, up_sampling2d
        from keras.src.ops import nn
    except ImportError:  # no Keras 3: nothing to rewrite
        yield
        return
    up1, up2 = up_sampling1d.UpSampling1D, up_sampling2d.UpSampling2D
    saved = (nn._layer_normalization, embedding.Embedding.call, up1.call,
             up2._resize_images)
    nn._layer_normalization = _layer_norm(saved[0])
    embedding.Embedding.call = _embedding_call(saved[1])
    up1.call = _up_sampling_1d(saved[2])
    up2._resize_images = _up_sampling_2d(saved[3])
    try:
        yield
    finally:
        (nn._layer_normalization, embedding.Embedding.call, up1.call,
         up2._resize_images) = saved
