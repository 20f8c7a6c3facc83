"""Accuracy table: int8 PTQ, prune_qat, pcqat and the mixed-precision plan
side by side, accuracy and bytes, on digits (several seeds) and on the
DS-CNN keyword-spotting shape (synthetic learnable data).

Every compressed row runs the same job as ``tfcompress optimize`` with its
defaults (``jobs.optimize``: every stage trains on all of the float model's
training data, a seeded 20% of it restores the best epoch and carries the
accuracy guard), then the int8 model is scored in LiteRT on a test split
that neither the float model nor any step has seen. Both numbers are
reported: the test accuracy, and the holdout accuracy the guard judged.

    python -m benchmarks.accuracy --md BENCHMARKS.md [--seeds 0,1,2]
    python -m benchmarks.accuracy --only digits --json d.json   (then)
    python -m benchmarks.accuracy --render d.json k.json --md BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def log(msg: str) -> None:
    print(f"[accuracy] {msg}", file=sys.stderr, flush=True)


def litert_accuracy(tflite: bytes, x, y) -> float:
    from converters.runtimes import litert
    out = litert.run(tflite, x).outputs
    return float(np.mean(np.argmax(out.reshape(len(x), -1), -1) == y))


def keras_accuracy(model, x, y) -> float:
    out = model.predict(x, verbose=0, batch_size=256)
    return float(np.mean(np.argmax(out.reshape(len(x), -1), -1) == y))


# -- models -------------------------------------------------------------------
def digits_case():
    """The trained digits float model and its train / test split."""
    from sample_models import digits
    (x, y), (xt, yt) = digits.load_data()
    model = digits.build_model()
    digits.compile_model(model)
    model.fit(x, y, epochs=digits.EPOCHS, batch_size=digits.BATCH_SIZE,
              verbose=0)
    return "digits", model, (x, y), (xt, yt)


def ds_cnn(classes: int = 12):
    """DS-CNN (Zhang et al., Hello Edge) shape: 49x10 MFCC input, a 10x4
    stride-2 conv, four depthwise-separable blocks of 64 channels with
    BatchNorm, average pooling, 12 classes (logits)."""
    from tfcompress.keras2.env import keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 10, 1), name="mfcc")
    h = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False,
                 name="conv")(inp)
    h = L.ReLU(name="conv_relu")(L.BatchNormalization(name="conv_bn")(h))
    for i in range(4):
        h = L.DepthwiseConv2D(3, padding="same", use_bias=False,
                              name=f"dw{i}")(h)
        h = L.ReLU(name=f"dw{i}_relu")(L.BatchNormalization(
            name=f"dw{i}_bn")(h))
        h = L.Conv2D(64, 1, use_bias=False, name=f"pw{i}")(h)
        h = L.ReLU(name=f"pw{i}_relu")(L.BatchNormalization(
            name=f"pw{i}_bn")(h))
    h = L.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(inp, L.Dense(classes, name="logits")(h), name="ds_cnn")


def ds_cnn_data(n: int = 3000, classes: int = 12, seed: int = 0):
    """Learnable synthetic "keywords": each class is a smooth random
    time-frequency template (the same for every ``seed``); a sample is its
    template shifted in time by up to 6 frames, scaled, plus noise."""
    base = np.random.default_rng(1234).normal(  # the same classes always
        size=(classes, 49 + 6, 10)).astype(np.float32)
    rng = np.random.default_rng(seed)
    kernel = np.ones(5, np.float32) / 5
    base = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 1,
                               base)
    y = rng.integers(0, classes, n)
    shift = rng.integers(0, 7, n)
    x = np.stack([base[c, s:s + 49] for c, s in zip(y, shift)])
    x = x * rng.uniform(0.8, 1.2, (n, 1, 1)) + rng.normal(
        scale=0.3, size=x.shape)
    return x[..., None].astype(np.float32), y.astype(np.int64)


def ds_cnn_case():
    from tfcompress.keras2.env import keras
    x, y = ds_cnn_data()
    xt, yt = ds_cnn_data(800, seed=1)
    model = ds_cnn()
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    return "ds_cnn", model, (x, y), (xt, yt)


# -- rows ---------------------------------------------------------------------
def run_recipe(model, data, test, recipe, seed: int, name: str) -> dict:
    """``jobs.optimize`` with CLI defaults, then the test-set accuracy of
    the artifact it ships (or rejects)."""
    from tfcompress.pipeline import jobs
    x, y = data
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        art = jobs.optimize(model, x, y, recipe, target="micro", out_dir=out,
                            name=name, seed=seed, log=None)
        seconds = time.perf_counter() - started
    comp = art.report["comparison"]
    lut = art.report["validation"].get("micro_lut", {})
    flash = comp["compressed"]["flash_bytes"]
    # the plain int8 model: the shipped one may be LUT-encoded (TFLM only),
    # with outputs identical to it in TFLM
    return {
        "seed": seed,
        "test_accuracy": litert_accuracy(art.plain_tflite, *test),
        "holdout_accuracy": comp["compressed"]["accuracy"],
        "float_holdout_accuracy": comp["float"]["accuracy"],
        "bytes": comp["compressed"]["bytes"], "flash": flash,
        "lut_passed": lut.get("passed"),
        "guard": comp["verdict"]["passed"], "seconds": round(seconds, 1),
        "ptq_holdout_accuracy": comp["int8_ptq"]["accuracy"],
        "ptq_bytes": comp["int8_ptq"]["bytes"],
    }


def ptq_row(model, data, test) -> dict:
    from converters import convert
    art = convert(model, data[0], target="micro", mode="int8")
    return {"test_accuracy": litert_accuracy(art.tflite, *test),
            "bytes": len(art.tflite), "flash": len(art.tflite)}


def mixed_recipe(model, data, budget_fraction: float = 0.8):
    """Mixed-precision plan on the holdout ``optimize`` validates on:
    budget ``budget_fraction`` of the uniform int8 flash."""
    from tfcompress.analysis import mixed_precision as mixed
    from tfcompress.pipeline import data as datasets
    _, (xv, yv) = datasets.split(*data, datasets.HOLDOUT)
    sens = mixed.analyze(model, xv, yv)
    probe = mixed.choose(model, sens, xv, yv, max_accuracy_drop=0.0)
    budget = int(budget_fraction * probe.uniform[8]["bytes"])
    plan = mixed.choose(model, sens, xv, yv, max_bytes=budget)
    return plan.recipe(epochs=3), plan, budget


METHODS = ("prune_qat", "pcqat", "mixed")


def bench_case(case, seeds, on_row=None, methods=METHODS) -> dict:
    """Float, PTQ and every recipe row of one model; ``on_row(res)`` after
    each row (to save partial results)."""
    name, model, data, test = case
    res = {"name": name, "float": keras_accuracy(model, *test),
           "ptq": ptq_row(model, data, test), "rows": {}}
    log(f"{name}: float {res['float']:.4f}, PTQ "
        f"{res['ptq']['test_accuracy']:.4f}")
    recipes = [(r, r) for r in ("prune_qat", "pcqat") if r in methods]
    try:
        if "mixed" not in methods:
            raise ValueError("not asked for")
        recipe, plan, budget = mixed_recipe(model, data)
        res["mixed_plan"] = {"bits": plan.bits, "budget": budget,
                             "uniform": {str(b): u["bytes"] for b, u in
                                         plan.uniform.items()}}
        recipes.append(("mixed", recipe))
    except ValueError as exc:  # a budget the planner cannot meet
        log(f"{name}: no mixed-precision plan: {exc}")
        if "mixed" in methods:
            res["mixed_note"] = str(exc)
    for label, rec in recipes:
        rows = res["rows"][label] = []
        for seed in seeds:
            log(f"{name}: {label} seed {seed}")
            rows.append(run_recipe(model, data, test, rec, seed, name))
            log(f"  {json.dumps(rows[-1])}")
            if on_row is not None:
                on_row(res)
    return res


HEADER = ["| method | test accuracy (median) | drop vs float (points) | "
          "test accuracy per seed | guard's holdout accuracy per seed | "
          "micro .tflite bytes (median) | guard per seed |",
          "|---|---:|---:|---|---|---:|---|"]


def render(results) -> str:
    """One table per model: float, int8 PTQ and each recipe, every seed."""
    lines = []
    for res in results:
        f, ptq = res["float"], res["ptq"]
        lines += [f"**{res['name']}**", "", *HEADER,
                  f"| float (Keras) | {100 * f:.2f}% | 0 | – | – | – | – |",
                  f"| int8 PTQ (model_ptq.tflite) | "
                  f"{100 * ptq['test_accuracy']:.2f}% | "
                  f"{100 * (f - ptq['test_accuracy']):.2f} | – | – | "
                  f"{ptq['bytes']:,} | – |"]
        holdout = None
        for label, rows in res["rows"].items():
            accs = [r["test_accuracy"] for r in rows]
            med = statistics.median(accs)
            holdout = (rows[0]["float_holdout_accuracy"],
                       rows[0]["ptq_holdout_accuracy"])
            lines.append(
                f"| {label} | {100 * med:.2f}% | {100 * (f - med):.2f} | "
                + ", ".join(f"{100 * a:.2f}" for a in accs) + " | "
                + ", ".join(f"{100 * r['holdout_accuracy']:.2f}"
                            for r in rows) + " | "
                f"{int(statistics.median(r['bytes'] for r in rows)):,} | "
                + "/".join("ok" if r["guard"] else "rejected" for r in rows)
                + " |")
        lines.append("")
        if holdout is not None:
            lines += [f"The guard's holdout: float {100 * holdout[0]:.2f}%, "
                      f"int8 PTQ {100 * holdout[1]:.2f}%.", ""]
        if res.get("mixed_note"):
            lines += [f"Mixed plan: none; {res['mixed_note']}.", ""]
        plan = res.get("mixed_plan")
        if plan:
            lines += [f"Mixed plan: budget {plan['budget']:,} B (80% of the "
                      f"uniform int8 {plan['uniform']['8']:,} B; uniform "
                      f"4-bit {plan['uniform']['4']:,} B), weight bits "
                      + ", ".join(f"{n}={b}" for n, b in plan["bits"].items())
                      + ".", ""]
    return "\n".join(lines)


def merge(results: list, more: list) -> list:
    """Results of several runs: rows of the same model side by side, the
    seeds of a method joined (the float model and its data are seeded, so
    they are the same in every run)."""
    out = [dict(r, rows=dict(r["rows"])) for r in results]
    for res in more:
        same = [r for r in out if r["name"] == res["name"]]
        if same:  # seeds of a method in the order the files were given
            for label, rows in res["rows"].items():
                same[0]["rows"][label] = same[0]["rows"].get(label, []) + rows
            for key in ("mixed_plan", "mixed_note"):
                if key in res:
                    same[0][key] = res[key]
        else:
            out.append(dict(res, rows=dict(res["rows"])))
    return out


BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"

INTRO = """\
## Accuracy: int8 PTQ baseline vs prune_qat vs pcqat

Each compressed row is `tfcompress optimize MODEL --data TRAIN.npz --recipe
R --target micro --seed S` with every other option at its default
(`jobs.optimize`): TRAIN.npz is the float model's own training data, every
stage trains on all of it (`fit.all_data`), a seeded 20% of it restores each
stage's best epoch and carries the accuracy guard (1 point below float or
below int8 PTQ rejects). The float model has seen those holdout rows, so
the guard's numbers (column "guard's holdout accuracy") measure how much of
its fit was kept; the honest number is the test accuracy, on a split that
neither the float model nor any stage has seen (the shipped model's plain
int8 twin in LiteRT; the shipped model is output-identical to it in TFLM).
Median of the seeds; every seed listed. Bytes: the .tflite the micro
artifact ships (its weights PRUNE/LUT-encoded where the flash plan chose
so, which is also its flash); int8 PTQ: the plain int8 model. "mixed":
the weight-bit plan of `tfcompress sensitivity --weight-bits` under a budget
of 80% of the uniform int8 flash, then `optimize` with its recipe (3
epochs). Digits: scikit-learn `load_digits`, 1,437 train / 360 test.
DS-CNN: the keyword-spotting shape (49x10x1 input, 10x4 stride-2 conv, four
depthwise-separable blocks of 64 channels with BatchNorm, 12 classes) on
synthetic learnable data, 3,000 train / 800 test; this data is easy (float
100%), so its rows show bytes and that nothing breaks, not fine accuracy
differences. Regenerate with `python -m benchmarks.accuracy --md
BENCHMARKS.md` (digits seeds 0/1/2, `--ds-seeds` for the DS-CNN; runs can
be split with `--only`/`--methods`/`--json` and joined with `--render`).
"""


def section(results) -> str:
    """The BENCHMARKS.md section, between its markers."""
    return f"{BEGIN}\n{INTRO}\n{render(results)}{END}"


def write_section(path: str, text: str) -> None:
    """Replace the marked section of ``path`` (or append it)."""
    old = open(path).read() if os.path.exists(path) else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    from converters.files import atomic_write
    atomic_write(path, new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="the table alone")
    parser.add_argument("--md", default=None,
                        help="replace the accuracy section of this file "
                             "(BENCHMARKS.md)")
    parser.add_argument("--json", default=None,
                        help="save the raw results (per seed) here")
    parser.add_argument("--render", nargs="+", default=None,
                        help="render saved --json results instead of "
                             "measuring")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ds-seeds", default="0")
    parser.add_argument("--only", choices=("digits", "ds_cnn"), default=None)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="which compressed rows to measure")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = []
    if args.render:
        for path in args.render:
            with open(path) as f:
                results = merge(results, json.load(f))
    from converters.files import atomic_write
    methods = args.methods.split(",")

    def save(partial=None):
        if args.json:
            atomic_write(args.json, json.dumps(
                results + ([partial] if partial else []), indent=1))
    if not args.render and args.only in (None, "digits"):
        results.append(bench_case(digits_case(), [
            int(s) for s in args.seeds.split(",")], save, methods))
    if not args.render and args.only in (None, "ds_cnn"):
        results.append(bench_case(ds_cnn_case(), [
            int(s) for s in args.ds_seeds.split(",")], save, methods))
    save()
    text = render(results)
    print(text)
    if args.out:
        atomic_write(args.out, text)
    if args.md:
        write_section(args.md, section(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
