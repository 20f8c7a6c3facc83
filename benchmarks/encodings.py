"""Weight encodings for TFLM: flash and measured arena per encoding and plan.

    python -m benchmarks.encodings --out benchmarks/ENCODINGS.md

For each model: plain int8, every int8 weight tensor as LUT (where it
applies), PRUNE and HUFFMAN, and the planner's choice under 64 KiB, 128 KiB
and 256 KiB of RAM. Flash = bytes of the .tflite (names stripped); arena =
minimum measured in TFLM by bisection (the planner budgets the recommended
arena, minimum + 5%). Every encoded model's TFLM outputs are compared with
the plain int8 model's (bit-identical or the run fails).

Models: digits after the ``pcqat``, ``prune_qat`` and ``binary`` recipes
(trained here), and two shapes with synthetic weights made 75% sparse with
16 values per layer (what PCQAT leaves; accuracy is not measured): the
DS-CNN keyword-spotting model (49x10x1 MFCC input, 10x4 stride-2 conv, four
depthwise-separable blocks of 64 channels, 12 classes) and MobileNetV1-0.25
at 96x96x3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUDGETS = (64 * 1024, 128 * 1024, 256 * 1024)
METHODS = ("lut", "prune", "huffman")


def log(msg: str) -> None:
    print(f"[encodings {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


def _convert(model, x) -> tuple[bytes, dict]:
    from converters.conversion.modes import convert_bytes
    from converters.encodings import planner
    from converters.tflite import flatbuffer
    named = convert_bytes(model, x, mode="int8")
    return flatbuffer.strip_strings(named), planner.names_of(named)


def _sparse_clustered(model, seed: int = 0) -> None:
    """75% of each kernel zero (smallest magnitudes), the rest on 16 values
    (k-means-like quantiles), biases kept."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights or weights[0].ndim < 2:
            continue
        w = weights[0]
        w = rng.normal(0, 0.2, w.shape).astype(np.float32)
        cut = np.quantile(np.abs(w), 0.75)
        keep = np.abs(w) > cut
        centroids = np.quantile(w[keep], np.linspace(0.02, 0.98, 16))
        idx = np.abs(w[..., None] - centroids).argmin(-1)
        weights[0] = np.where(keep, centroids[idx], 0.0).astype(np.float32)
        layer.set_weights(weights)


def ds_cnn():
    from tfcompress.keras2.env import keras
    layers = keras.layers
    inp = keras.Input((49, 10, 1))
    h = layers.Conv2D(64, (10, 4), strides=2, padding="same",
                      activation="relu")(inp)
    for _ in range(4):
        h = layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
        h = layers.Conv2D(64, 1, activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(12)(h), name="ds_cnn")


def mobilenet_025():
    """MobileNetV1 alpha 0.25 at 96x96x3 (Keras applications body, no
    download), global average pooling and a 10-class Dense head."""
    from tfcompress.keras2.env import keras
    body = keras.applications.MobileNet(
        input_shape=(96, 96, 3), alpha=0.25, weights=None,
        include_top=False, pooling="avg")
    return keras.Model(body.input, keras.layers.Dense(10)(body.output),
                       name="mobilenet_v1_025")


def synthetic(name: str, build) -> tuple[bytes, dict, np.ndarray]:
    model = build()
    _sparse_clustered(model)
    shape = model.input_shape[1:]
    x = np.random.default_rng(1).normal(size=(64, *shape)).astype(np.float32)
    tflite, names = _convert(model, x)
    return tflite, names, x


def digits_models() -> dict:
    from sample_models import digits
    from tfcompress.keras2.env import keras
    from tfcompress.pipeline.recipe import Recipe
    from tfcompress.pipeline.stages import compress
    (x, y), (xt, yt) = digits.load_data()
    base = digits.build_model()
    digits.compile_model(base)
    log("digits: training the float model")
    base.fit(x, y, epochs=digits.EPOCHS, batch_size=digits.BATCH_SIZE,
             verbose=0)
    out = {}
    for recipe in ("pcqat", "prune_qat", "binary"):
        log(f"digits: recipe {recipe}")
        model = keras.models.clone_model(base)
        model.set_weights(base.get_weights())
        rec = Recipe.load(recipe)
        rec.fit["verbose"] = 0
        result = compress(model, (x, y), (xt, yt), rec)
        tflite, names = _convert(result.model, x)
        out[f"digits {recipe}"] = (tflite, names, xt[:32])
    return out


def _quantized_inputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from converters.tflite import flatbuffer
    d = flatbuffer.read(tflite).input_details[0]
    return np.clip(np.round(x / d.scale[0] + d.zero_point[0]), -128,
                   127).astype(np.int8)


def measure(name: str, tflite: bytes, names: dict, x: np.ndarray) -> dict:
    from converters.encodings import decode, planner
    from converters.runtimes import tflm
    xq = _quantized_inputs(tflite, x)[:16]
    weights = [c for c in decode.constants(tflite)
               if c.dtype == "INT8" and c.refusal is None]
    plain_arena = tflm.find_arena(tflite)
    rows = {"plain int8": {"flash": len(tflite), "arena": plain_arena,
                           "tensors": 0}}
    for method in METHODS:
        encs = {}
        for c in weights:
            try:
                encs[c.index] = planner.ENCODERS[method](c)
            except decode.EncodingError:
                pass
        if not encs:
            rows[method] = {"flash": None, "arena": None, "tensors": 0}
            continue
        model = decode.apply(tflite, encs)
        planner.prove(tflite, model, xq)
        rows[method] = {"flash": len(model), "arena": tflm.find_arena(model),
                        "tensors": len(encs),
                        "of": len(weights)}
    for ram in BUDGETS:
        log(f"{name}: planning for {ram // 1024} KiB RAM")
        p = planner.plan(tflite, xq, ram=ram, names=names,
                         plain_arena=plain_arena)
        rows[f"planned, {ram // 1024} KiB RAM"] = {
            "flash": p.flash, "arena": p.arena, "fits": p.fits,
            "tensors": len(p.encoded), "of": len(weights),
            "message": p.message,
            "choice": ", ".join(f"{t.name}: {t.encoding}"
                                for t in p.encoded)}
    return rows


def render(results: dict, elapsed: float) -> str:
    out = ["# Weight encodings for TFLM: flash and arena", "",
           __doc__.split("\n\n", 1)[1].strip(), "",
           f"One run, {elapsed / 60:.1f} min, host x86-64 (64-bit arena "
           "figures from the tflite-micro Python interpreter).", ""]
    for name, rows in results.items():
        if "error" in rows:
            out += [f"## {name}", "", f"Not measured: {rows['error']}", ""]
            continue
        plain = rows["plain int8"]
        out += [f"## {name}", "",
                "| variant | flash B | flash / plain | arena B (min) | "
                "weight tensors encoded |", "|---|---|---|---|---|"]
        for label, r in rows.items():
            if r["flash"] is None:
                out.append(f"| {label} | - | - | - | none applies |")
                continue
            fits = "" if "fits" not in r else \
                (" (fits)" if r["fits"] else " (**does not fit**)")
            enc = f"{r['tensors']} of {r['of']}" if "of" in r else "-"
            out.append(f"| {label}{fits} | {r['flash']:,} | "
                       f"{r['flash'] / plain['flash']:.3f} | {r['arena']:,} |"
                       f" {enc} |")
        for label, r in rows.items():
            if r.get("message"):
                out.append(f"- {label}: {r['message']}"
                           + (f"; encoded: {r['choice']}" if r.get("choice")
                              else ""))
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/ENCODINGS.md")
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    log("building the DS-CNN and MobileNetV1-0.25 shapes")
    models = {
        "DS-CNN (49x10x1, synthetic 75% sparse, 16 values)":
            lambda: synthetic("ds-cnn", ds_cnn),
        "MobileNetV1-0.25 96x96x3 (synthetic 75% sparse, 16 values)":
            lambda: synthetic("mobilenet", mobilenet_025)}
    results = {}
    for name, make in models.items():
        tflite, names, x = make()
        log(f"{name}: measuring")
        try:
            results[name] = measure(name, tflite, names, x)
        except Exception as exc:  # noqa: BLE001 - report it, go on
            log(f"{name}: FAILED: {exc}")
            results[name] = {"error": str(exc).splitlines()[0]}
    if not args.skip_digits:
        for name, (tflite, names, x) in digits_models().items():
            log(f"{name}: measuring")
            results[name] = measure(name, tflite, names, x)
    text = render(results, time.perf_counter() - started)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
