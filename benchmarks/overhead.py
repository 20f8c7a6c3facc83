"""Training-step overhead of each wrapper vs plain fit."""

from __future__ import annotations

import statistics

import numpy as np

from benchmarks.common import (
    OVERHEAD_EPOCHS,
    clone,
    log,
)
from benchmarks.timing import EpochTimer


def bench_overhead(res: dict) -> None:
    import tfcompress as tfc
    from tfcompress.keras2.env import keras, tfmot
    base = res["digits_base"]
    x, y = res["digits_x"]
    steps = int(np.ceil(len(x) / 32))

    def compile_(m):
        m.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"])
        return m

    def plain():
        return clone(base), []

    def tfc_prune():
        m = tfc.prune(clone(base), target_sparsity=0.75,
                      schedule="polynomial")
        return m, tfc.callbacks_for(m)

    def tfc_cluster():
        m = tfc.cluster(clone(base), 16)
        return m, tfc.callbacks_for(m)

    def tfc_quantize():
        m = tfc.quantize(clone(base))
        return m, tfc.callbacks_for(m)

    def tfmot_prune():
        m = tfmot.sparsity.keras.prune_low_magnitude(
            clone(base), pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                0.0, 0.75, 0, steps * (OVERHEAD_EPOCHS + 1)))
        return m, [tfmot.sparsity.keras.UpdatePruningStep()]

    # Build every variant, then interleave them epoch by epoch (one untimed
    # warm-up epoch each), so a noisy shared machine slows all alike.
    models = {}
    for name, make in (("plain fit", plain), ("tfc.prune", tfc_prune),
                       ("tfc.cluster", tfc_cluster),
                       ("tfc.quantize", tfc_quantize),
                       ("plain tfmot prune", tfmot_prune)):
        keras.utils.set_random_seed(0)
        m, cbs = make()
        compile_(m)
        models[name] = (m, cbs, EpochTimer())
    log(f"overhead: {len(models)} variants x {OVERHEAD_EPOCHS} epochs, "
        "interleaved")
    for epoch in range(OVERHEAD_EPOCHS + 1):
        order = list(models) if epoch % 2 == 0 else list(models)[::-1]
        for name in order:
            m, cbs, timer = models[name]
            m.fit(x, y, initial_epoch=epoch, epochs=epoch + 1, batch_size=32,
                  shuffle=False, callbacks=cbs + [timer], verbose=0)
    out = {name: statistics.median(t.times[1:])
           for name, (_, _, t) in models.items()}
    res["overhead"] = out


