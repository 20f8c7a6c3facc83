"""A MobileNet-style CNN builder shared by the structured-compression tests
and benchmarks (random weights are fine: size and latency only).

Conv2D 3x3/2 stem + BN + ReLU6, then blocks of DepthwiseConv2D 3x3 + BN +
ReLU6 and a 1x1 Conv2D + BN; a block with stride 1 and as many filters as
its input adds its input back (residual ``Add``) before the ReLU6. Global
average pooling and a Dense head (logits).

Not one of :data:`sample_models.SAMPLES` (it has no data set).

Example:
    >>> from sample_models import mobilenet_style
    >>> model = mobilenet_style.build_model((96, 96, 3))
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from tfcompress.keras2.env import keras

NAME = "mobilenet_style"
#: (filters, stride) per block; stride-1 blocks with unchanged filters are
#: residual
BLOCKS: Tuple[Tuple[int, int], ...] = (
    (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1))


def build_model(input_shape: Sequence[int] = (96, 96, 3), classes: int = 10,
                *, stem: int = 16, blocks: Sequence[Tuple[int, int]] = BLOCKS,
                seed: int = 0, random_bn: bool = False) -> keras.Model:
    """A Functional MobileNet-style model with residual ``Add`` blocks.

    Args:
        input_shape: ``(H, W, C)``.
        classes: units of the Dense head.
        stem: filters of the 3x3/2 stem convolution.
        blocks: ``(filters, stride)`` per depthwise-separable block.
        seed: seeds the initializers.
        random_bn: give BatchNormalization layers random gamma/beta/moving
            statistics (tests: non-trivial BN folding), instead of the
            identity-like defaults.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(tuple(input_shape), name="image")
    h = keras.layers.Conv2D(stem, 3, strides=2, padding="same",
                            use_bias=False, name="stem")(inputs)
    h = keras.layers.BatchNormalization(name="stem_bn")(h)
    h = keras.layers.ReLU(6.0, name="stem_relu")(h)
    channels = stem
    for i, (filters, stride) in enumerate(blocks):
        x = h
        h = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same",
                                         use_bias=False, name=f"dw{i}")(h)
        h = keras.layers.BatchNormalization(name=f"dw{i}_bn")(h)
        h = keras.layers.ReLU(6.0, name=f"dw{i}_relu")(h)
        h = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"pw{i}")(h)
        h = keras.layers.BatchNormalization(name=f"pw{i}_bn")(h)
        if stride == 1 and filters == channels:
            h = keras.layers.Add(name=f"add{i}")([x, h])
        h = keras.layers.ReLU(6.0, name=f"pw{i}_relu")(h)
        channels = filters
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(classes, name="logits")(h)
    model = keras.Model(inputs, outputs, name=NAME)
    if random_bn:
        randomize_batchnorm(model, seed)
    return model


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Random gamma, beta, moving mean and (positive) moving variance for
    every BatchNormalization layer of ``model``, in place."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[-1]
            layer.set_weights([
                rng.uniform(0.5, 1.5, n).astype(np.float32),
                rng.normal(0, 0.2, n).astype(np.float32),
                rng.normal(0, 0.2, n).astype(np.float32),
                rng.uniform(0.5, 1.5, n).astype(np.float32)])
