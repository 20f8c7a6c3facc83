"""Which weights of a Keras 3 layer each technique touches, and layer
selectors (names, classes, class names, ``"re:<regex>"``)."""

from __future__ import annotations

from typing import List

import keras

from tfcompress.selectors import matches  # noqa: F401

L = keras.layers
_MHA = ["query_dense.kernel", "key_dense.kernel", "value_dense.kernel",
        "output_dense.kernel"]
RECURRENT = (L.LSTM, L.GRU, L.SimpleRNN, L.RNN, L.Bidirectional)


def kernel_names(layer) -> List[str]:
    """The weight matrices of ``layer`` (what pruning, clustering and QAT
    transform); ``[]`` for layers without one."""
    if isinstance(layer, L.MultiHeadAttention):
        return list(_MHA)
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return ["depthwise_kernel", "pointwise_kernel"]
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return ["kernel"]
    if isinstance(layer, (L.Dense, L.EinsumDense, L.Conv1D, L.Conv2D,
                          L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose)):
        return ["kernel"]
    if isinstance(layer, L.Embedding):
        return ["embeddings"]
    return []


def prunable_weights(layer) -> List[str]:
    """Pruning leaves SeparableConv's small depthwise kernel dense."""
    names = kernel_names(layer)
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return ["pointwise_kernel"]
    return names


def channel_axis(layer, name: str) -> int:
    """The axis of output channels of a kernel (the one TFLite quantizes
    and LUT-compresses per channel)."""
    if name == "depthwise_kernel" or isinstance(
            layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return -2
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose)):
        return -2
    if isinstance(layer, L.Embedding):
        return 0
    return -1
