"""Keras 3 table: pruning, clustering and QAT of Keras 3 models
(``import keras``), beside the tf_keras path, on digits and a DS-CNN
keyword-spotting shape, and the step time of each Keras 3 wrapper against a
plain Keras 3 ``fit``.

    python -m benchmarks.keras3 [--out BENCHMARKS.md] [--runs 5]

Prints a markdown table; with ``--out`` it replaces the "Keras 3" section
of that file (appends it the first time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


RECIPE = {"stages": [{"prune": {"target_sparsity": 0.75, "epochs": 4}},
                     {"cluster": {"clusters": 16, "epochs": 2}},
                     {"quantize": {"epochs": 2}}],
          "fit": {"loss": "sparse_categorical_crossentropy",
                  "from_logits": True, "verbose": 0, "batch_size": 32}}
BEGIN, END = "<!-- keras3:begin -->", "<!-- keras3:end -->"


def log(msg: str) -> None:
    print(f"[keras3 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


def digits_model(keras):
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    h = L.Conv2D(32, 3, activation="relu", name="conv2")(h)
    h = L.Flatten()(L.MaxPooling2D(2)(h))
    h = L.Dense(64, activation="relu", name="fc1")(h)
    return keras.Model(inp, L.Dense(10, name="logits")(h), name="digits")


def ds_cnn(keras, classes: int = 12):
    """DS-CNN (Zhang et al., 2017): 10x4 stride-2 conv and four
    depthwise-separable blocks of 64 channels on a 49x10 MFCC map."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 10, 1), name="mfcc")
    h = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False,
                 name="conv")(inp)
    h = L.ReLU()(L.BatchNormalization()(h))
    for i in range(4):
        h = L.DepthwiseConv2D(3, padding="same", use_bias=False,
                              name=f"dw{i}")(h)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.Conv2D(64, 1, use_bias=False, name=f"pw{i}")(h)
        h = L.ReLU()(L.BatchNormalization()(h))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(classes, name="logits")(h), name="ds_cnn")


def kws_data(n: int = 3000, classes: int = 12, seed: int = 0):
    """Learnable synthetic keyword spotting: each class is a smooth
    time-frequency template, shifted in time, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 49)[:, None]
    f = np.linspace(0, 1, 10)[None, :]
    templates = np.stack([np.sin(2 * np.pi * (k % 4 + 1) * t + k) *
                          np.cos(np.pi * (k // 4 + 1) * f)
                          for k in range(classes)])
    y = rng.integers(0, classes, n)
    shift = rng.integers(-4, 5, n)
    x = np.stack([np.roll(templates[c], s, axis=0) for c, s in zip(y, shift)])
    x = x + rng.normal(scale=0.8, size=x.shape)
    x = x[..., None].astype(np.float32)
    cut = int(0.8 * n)
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def compiled(keras, model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def compress_row(name, keras, model, train, test, target="micro") -> dict:
    import converters
    import tfcompress as tfc
    from converters.tflite import flatbuffer
    started = time.perf_counter()
    result = tfc.compress(model, train, None, RECIPE)
    art = converters.convert(result.model, train[0][:200], target=target)
    rep = art.validate(*test)
    zeros = size = most = 0
    for t in flatbuffer.read(art.tflite).tensors:
        if t.is_constant and t.data.ndim >= 2 and t.dtype == "INT8":
            stats = flatbuffer.constant_stats(t, weight_axis=0)
            zeros += stats["sparsity"] * t.data.size
            size += t.data.size
            most = max(most, stats.get("unique_per_channel_max", 0))
    return {"name": name, "scheme": result.history[-1].get("scheme", ""),
            "litert_acc": rep["validation"]["litert"]["accuracy"],
            "micro": rep["validation"].get("micro", {}).get("passed"),
            "sparsity": zeros / size, "values": most,
            "bytes": len(art.tflite), "io": rep["tflite"]["input"]["dtype"],
            "seconds": round(time.perf_counter() - started, 1)}


def accuracy_rows() -> list:
    import keras
    from sample_models import digits
    rows = []
    (x, y), (x_te, y_te) = digits.load_data()
    model = compiled(keras, digits_model(keras))
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    acc = model.evaluate(x_te, y_te, verbose=0)[1]
    log(f"digits Keras 3 float {acc:.4f}")
    rows.append(dict(compress_row("digits, Keras 3", keras, model, (x, y),
                                  (x_te, y_te)), float_acc=acc))
    k2 = digits.build_model()
    digits.compile_model(k2)
    k2.fit(x, y, epochs=20, batch_size=32, verbose=0)
    acc2 = k2.evaluate(x_te, y_te, verbose=0)[1]
    rows.append(dict(compress_row("digits, tf_keras", None, k2, (x, y),
                                  (x_te, y_te)), float_acc=acc2))
    (kx, ky), (kx_te, ky_te) = kws_data()
    ds = compiled(keras, ds_cnn(keras))
    ds.fit(kx, ky, epochs=8, batch_size=32, verbose=0)
    acc3 = ds.evaluate(kx_te, ky_te, verbose=0)[1]
    log(f"DS-CNN Keras 3 float {acc3:.4f}")
    rows.append(dict(compress_row("DS-CNN KWS, Keras 3", keras, ds, (kx, ky),
                                  (kx_te, ky_te)), float_acc=acc3))
    for r in rows:
        log(str(r))
    return rows


def _step_shapes(keras):
    """``(label, model builder, x, y, batch size)`` of the step-time table:
    the DS-CNN shape at batch 64 (issue 23) and the digits CNN at 32."""
    from sample_models import digits
    (kx, ky), _ = kws_data(n=1280)
    (dx, dy), _ = digits.load_data()
    return [("DS-CNN 49x10x1, batch 64", lambda: ds_cnn(keras), kx, ky, 64),
            ("digits CNN, batch 32", lambda: digits_model(keras), dx, dy, 32)]


def overhead_rows(runs: int) -> dict:
    """Epoch time of each Keras 3 wrapper vs plain Keras 3 fit, per model
    shape: :func:`benchmarks.timing.interleaved_epochs` over ``runs``
    rounds, each wrapper with all of ``tfc.callbacks_for`` (epoch-end
    statistics included)."""
    import keras
    import tfcompress as tfc
    from benchmarks.timing import fit_epoch, interleaved_epochs
    from tfcompress.keras3.callbacks import begin_training
    out = {}
    for label, build, x, y, batch in _step_shapes(keras):
        base = compiled(keras, build())
        base.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        weights = base.get_weights()

        def fresh(build=build, weights=weights):
            m = build()
            m.set_weights(weights)
            return m

        steps = int(np.ceil(len(x) / batch))

        def pruned(fresh=fresh, steps=steps):
            m = tfc.prune(fresh(), 0.75)
            # the schedule of one fit of all rounds: masks are updated in
            # the timed rounds too, not only in the warm-up
            begin_training(m, steps * (runs + 1))
            return m

        makers = {"plain Keras 3 fit": fresh,
                  "tfc.prune": pruned,
                  "tfc.cluster": lambda: tfc.cluster(fresh(), 16),
                  "tfc.quantize": lambda: tfc.quantize(fresh())}
        epochs = {}
        for name, make in makers.items():
            m = compiled(keras, make(), 1e-4)
            epochs[name] = fit_epoch(m, x, y, batch, tfc.callbacks_for(m),
                                     keras)
        log(f"step time: {label}, {len(makers)} variants x {runs} rounds")
        res = interleaved_epochs(epochs, runs)
        res["steps"] = steps
        out[label] = res
        log(f"{label}: " + ", ".join(
            f"{k} {v['ratio']:.2f}x" for k, v in res.items()
            if isinstance(v, dict)))
    return out


STEPS_BEGIN, STEPS_END = "<!-- keras3-steps:begin -->", \
    "<!-- keras3-steps:end -->"


def render_steps(step_ms: dict, runs: int) -> str:
    lines = [STEPS_BEGIN,
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} (`python -m "
             "benchmarks.keras3 --skip-accuracy`). "
             "Step time of each Keras 3 wrapper against plain Keras 3 `fit` "
             "of the same model, weights and batches (TensorFlow backend, "
             "no `jit_compile`), each wrapper with all of "
             "`tfc.callbacks_for` (epoch-end statistics included); the "
             "pruning schedule is resolved for one fit of all rounds, so "
             "mask updates fall in the timed rounds. One "
             f"warm-up round, then {runs} rounds of one epoch per variant, "
             "the order reversed every other round; the ratio is the median "
             "over rounds of the variant's epoch over plain fit's epoch of "
             "the same round (the CPU column: the same for the process's CPU "
             "seconds, which other jobs' load disturbs less). Goal: each "
             "wrapper <= 1.3x, judged on the wall-clock ratio."]
    for label, res in step_ms.items():
        lo, hi = res["load"]
        lines += ["", f"**{label}** ({res['steps']} steps/epoch; load "
                  f"average {lo:.1f} before, {hi:.1f} after)", "",
                  "| training | ms/step | vs plain Keras 3 fit | "
                  "lowest-highest round | CPU time vs plain | <= 1.3x |",
                  "|---|---:|---:|---:|---:|:-:|"]
        for name, v in res.items():
            if not isinstance(v, dict):
                continue
            verdict = "-" if name.startswith("plain") else \
                ("met" if v["ratio"] <= 1.3 else "**not met**")
            lines.append(f"| {name} | {1000 * v['seconds'] / res['steps']:.1f}"
                         f" | {v['ratio']:.2f}x | {v['spread'][0]:.2f}-"
                         f"{v['spread'][1]:.2f} | {v['cpu_ratio']:.2f}x | "
                         f"{verdict} |")
    lines.append(STEPS_END)
    return "\n".join(lines)


def render(rows: list, step_ms: dict, runs: int) -> str:
    lines = [BEGIN, "## Keras 3", "",
             "PCQAT recipe (prune 75% polynomial 4 ep -> cluster 16 "
             "sparsity-preserving 2 ep -> QAT 2 ep) through `tfc.compress`, "
             "int8 .tflite for `micro` validated in LiteRT and TFLM. "
             "Sparsity and values per channel are read from the int8 "
             "flatbuffer's constant weight tensors.", "",
             "| model | scheme | float acc | int8 LiteRT acc | TFLM | "
             "sparsity | values/channel | int8 bytes | I/O |",
             "|---|---|---:|---:|:-:|---:|---:|---:|:-:|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['scheme']} | {r['float_acc']:.4f} | "
            f"{r['litert_acc']:.4f} | {'pass' if r['micro'] else 'FAIL'} | "
            f"{r['sparsity']:.1%} | {r['values']} | {r['bytes']:,} | "
            f"{r['io']} |")
    lines += ["", render_steps(step_ms, runs)]
    lines.append(END)
    return "\n".join(lines)


def write(path: str, section: str, steps_only: bool = False) -> None:
    """Replace the Keras 3 section of ``path`` (only its step-time part
    with ``steps_only``)."""
    text = open(path).read() if os.path.exists(path) else ""
    if steps_only and STEPS_BEGIN in text and STEPS_END in text:
        begin, end = STEPS_BEGIN, STEPS_END
        section = STEPS_BEGIN + section.split(STEPS_BEGIN, 1)[1].split(
            STEPS_END, 1)[0] + STEPS_END
    else:
        begin, end = BEGIN, END
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    from converters.files import atomic_write
    atomic_write(path, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv)
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    step_ms = overhead_rows(args.runs)
    rows = [] if args.skip_accuracy else accuracy_rows()
    section = render(rows, step_ms, args.runs)
    print(section)
    if args.out:
        write(args.out, section, steps_only=args.skip_accuracy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
