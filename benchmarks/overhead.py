"""Training-step overhead of each wrapper vs plain fit, on the digits CNN
and on a DS-CNN keyword-spotting shape (interleaved epochs, medians)."""

from __future__ import annotations

import statistics

import numpy as np

from benchmarks.common import OVERHEAD_EPOCHS, clone, log
from benchmarks.timing import EpochTimer


def dscnn(seed: int = 0):
    """DS-CNN keyword-spotting shape: 49x10x1 MFCCs, a 10x4 stride-2 conv and
    four depthwise-separable blocks of 64 channels, 12 classes."""
    from tfcompress.keras2.env import keras
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((49, 10, 1))
    h = layers.Conv2D(64, (10, 4), strides=2, padding="same",
                      use_bias=False)(inputs)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    for _ in range(4):
        h = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
        h = layers.ReLU()(layers.BatchNormalization()(h))
        h = layers.Conv2D(64, 1, use_bias=False)(h)
        h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, layers.Dense(12)(h), name="ds_cnn")


def dscnn_data(n: int = 64 * 16, seed: int = 0):
    """Synthetic learnable data: the class shifts the input's mean."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 12, n)
    x = rng.normal(size=(n, 49, 10, 1)) + 0.1 * y[:, None, None, None]
    return x.astype(np.float32), y


def interleaved(base, x, y, batch_size: int,
                epochs: int = OVERHEAD_EPOCHS) -> dict:
    """Median epoch seconds of plain fit and each wrapper on ``base``'s
    weights: one untimed warm-up epoch each, then ``epochs`` epochs
    interleaved variant by variant (order alternating), so a noisy shared
    machine slows all alike."""
    import tfcompress as tfc
    from tfcompress.keras2.env import keras, tfmot
    steps = int(np.ceil(len(x) / batch_size))

    def wrapped(fn):
        m = fn(clone(base))
        return m, tfc.callbacks_for(m)

    def tfmot_prune():
        m = tfmot.sparsity.keras.prune_low_magnitude(
            clone(base), pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                0.0, 0.75, 0, steps * (epochs + 1)))
        return m, [tfmot.sparsity.keras.UpdatePruningStep()]

    makers = {
        "plain fit": lambda: (clone(base), []),
        "tfc.prune": lambda: wrapped(lambda m: tfc.prune(
            m, target_sparsity=0.75, schedule="polynomial")),
        "tfc.cluster": lambda: wrapped(lambda m: tfc.cluster(m, 16)),
        "tfc.quantize": lambda: wrapped(tfc.quantize),
        "plain tfmot prune": tfmot_prune,
    }
    models = {}
    for name, make in makers.items():
        keras.utils.set_random_seed(0)
        m, cbs = make()
        m.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"])
        models[name] = (m, cbs, EpochTimer())
    for epoch in range(epochs + 1):
        order = list(models) if epoch % 2 == 0 else list(models)[::-1]
        for name in order:
            m, cbs, timer = models[name]
            m.fit(x, y, initial_epoch=epoch, epochs=epoch + 1,
                  batch_size=batch_size, shuffle=False,
                  callbacks=cbs + [timer], verbose=0)
    return {name: statistics.median(t.times[1:])
            for name, (_, _, t) in models.items()}


def bench_overhead(res: dict) -> None:
    x, y = res["digits_x"]
    log(f"overhead: digits, 5 variants x {OVERHEAD_EPOCHS} epochs, "
        "interleaved")
    res["overhead"] = interleaved(res["digits_base"], x, y, 32)
    log(f"overhead: DS-CNN, 5 variants x {OVERHEAD_EPOCHS} epochs, "
        "interleaved")
    x, y = dscnn_data()
    res["overhead_dscnn"] = interleaved(dscnn(), x, y, 64)
