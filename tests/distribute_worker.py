"""Run ``tfcompress.compress`` per mode under a ``tf.distribute`` strategy.

A script, not a test module: ``tests/test_distribute.py`` runs it in a fresh
process, because logical devices and ``MultiWorkerMirroredStrategy`` must be
configured before TensorFlow initializes.

    python tests/distribute_worker.py --strategy mirrored --out result.json \
        --modes prune,cluster,quantize,pcqat

With ``--strategy mirrored`` it splits the CPU into 2 logical devices and
also runs every mode on a single device, so the result holds both
(``{"single": {mode: ...}, "mirrored": {mode: ...}}``). With
``--strategy multiworker`` it reads ``TF_CONFIG``; with ``--reference`` the
worker also runs the single-device runs afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

N_TRAIN, N_TEST = 512, 256
CLUSTERS = 8
BASE_EPOCHS = 10
SPARSITY = 0.6
FIT = {"batch_size": 32, "optimizer": "adam", "learning_rate": 0.002,
       "loss": "sparse_categorical_crossentropy", "from_logits": True,
       "validation_split": 0.0, "verbose": 0, "seed": 0}
RECIPES = {
    "prune": [{"prune": {"target_sparsity": SPARSITY, "epochs": 3,
                         "schedule": "polynomial"}}],
    "cluster": [{"cluster": {"clusters": CLUSTERS, "init": "kmeans++",
                             "epochs": 2}}],
    "quantize": [{"quantize": {"epochs": 2}}],
    "pcqat": [{"prune": {"target_sparsity": SPARSITY, "epochs": 3}},
              {"cluster": {"clusters": CLUSTERS, "preserve_sparsity": True,
                           "epochs": 1}},
              {"quantize": {"epochs": 1}}],
}


def _split_cpu(n: int = 2) -> None:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * n)


class StepProbe:
    """A Keras callback (built lazily) recording, at the end of each fit,
    the optimizer's iterations and every pruning wrapper's step."""

    def __new__(cls, sink: list):
        from tfcompress.keras2.env import keras

        class _Probe(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                steps = {layer.layer.name: int(layer.pruning_step.numpy())
                         for layer in self.model.layers
                         if hasattr(layer, "pruning_step")}
                sink.append({
                    "iterations": int(self.model.optimizer.iterations.numpy()),
                    "pruning_steps": steps,
                    "replicas_differ": _replicas_differ(self.model),
                    "variable_type": type(self.model.trainable_weights[0]
                                          ).__name__,
                })
        return _Probe()


def _digest(model) -> str:
    """A hash of every weight's bytes: equal on workers that agree."""
    import hashlib
    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.numpy().tobytes())
    return h.hexdigest()[:16]


def _replicas_differ(model) -> list:
    """Names of variables whose per-device copies are not all equal."""
    import numpy as np
    bad = []
    for w in model.weights:
        copies = [v.numpy() for v in getattr(w, "values", [w])]
        if any(not np.array_equal(copies[0], c) for c in copies[1:]):
            bad.append(w.name)
    return bad


def data():
    import numpy as np
    from conftest import classification_data
    x, y = classification_data(np.random.default_rng(0), n=N_TRAIN + N_TEST)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def base_model(train):
    """A briefly trained float model (the same in every process)."""
    from conftest import compile_clf, small_cnn
    model = compile_clf(small_cnn(), lr=3e-3)
    model.fit(*train, epochs=BASE_EPOCHS, batch_size=32, verbose=0, shuffle=False)
    return model


def accuracy(model, test) -> float:
    import numpy as np
    logits = model.predict(test[0], batch_size=128, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == test[1]))


def run_mode(mode: str, weights, train, test, strategy) -> dict:
    import tfcompress as tfc
    from conftest import small_cnn
    model = small_cnn()
    model.set_weights(weights)
    probes: list = []
    result = tfc.compress(model, train, None,
                          {"stages": RECIPES[mode], "fit": FIT},
                          callbacks=[StepProbe(probes)], strategy=strategy)
    rows = tfc.kernel_stats(result.model)
    return {
        "accuracy": accuracy(result.model, test),
        "sparsity": {r.layer: r.sparsity for r in rows},
        "unique": {r.layer: r.unique for r in rows},
        "unique_per_channel": {r.layer: r.unique_per_channel_max
                               for r in rows},
        "weights_digest": _digest(result.model),
        "stages": [{"kind": h["kind"], "sparsity": h["sparsity"],
                    "max_unique": h["max_unique"],
                    "logged_sparsity": h["history"].get("sparsity", []),
                    "scheme": h.get("scheme")} for h in result.history],
        "probes": probes,
        "report": [e for e in result.report if e.get("status") == "compressed"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", choices=["mirrored", "multiworker"],
                   required=True)
    p.add_argument("--modes", default=",".join(RECIPES))
    p.add_argument("--out", required=True)
    p.add_argument("--reference", action="store_true",
                   help="also run every mode on a single device")
    args = p.parse_args(argv)

    from tfcompress.pipeline.distribute import get_strategy
    if args.strategy == "mirrored":
        _split_cpu(2)
    strategy = get_strategy(args.strategy)  # before any other TF op
    train, test = data()
    base = base_model(train)
    weights = base.get_weights()
    modes = args.modes.split(",")
    out = {"replicas": strategy.num_replicas_in_sync,
           "base_accuracy": accuracy(base, test),
           args.strategy: {m: run_mode(m, weights, train, test, strategy)
                           for m in modes}}
    if args.strategy == "mirrored" or args.reference:
        out["single"] = {m: run_mode(m, weights, train, test, None)
                         for m in modes}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
