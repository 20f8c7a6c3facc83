"""``make tflite``: train, compress, convert and validate every sample model.

For each sample: train the float model with ``fit``, run its recipe (digits:
prune 75% -> sparsity-preserving cluster 16 -> PCQAT, all through callbacks
in ``model.fit``; sine: none, post-training int8 as TFLM's hello_world), then
convert to full-integer int8 for the micro target, validate in LiteRT and in
the TFLM interpreter, and write ``build/<name>/``.

The terminal gets a status line per stage per model and one summary table;
everything else (Keras epochs, warnings) goes to ``build/<name>/log.txt``.
Errors still reach the terminal.

    python -m sample_models.build --out build [--only digits] [-v]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from sample_models import SAMPLES



class _Status:
    """Status lines: to the terminal and to the model's log file."""

    def __init__(self, log_file, terminal=sys.stderr):
        self.log_file, self.terminal = log_file, terminal

    def __call__(self, msg: str) -> None:
        print(msg, file=self.terminal, flush=True)
        print(msg, file=self.log_file, flush=True)


@contextlib.contextmanager
def _to_file(f):
    """Python's and native code's stdout and stderr (file descriptors 1
    and 2) into ``f`` while the block runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def build_logged(name: str, out_root: str, *, verbose: int = 2,
                 echo: bool = False):
    """:func:`build` with Keras' and Python's output in
    ``out_root/name/log.txt``; only status lines reach the terminal (all of
    it with ``echo``)."""
    os.makedirs(out_root, exist_ok=True)
    tmp_log = os.path.join(out_root, f".{name}.log.txt")
    terminal = os.fdopen(os.dup(2), "w")   # stays the terminal when fd 2 moves
    with open(tmp_log, "w") as f, terminal:
        status = _Status(f, terminal)
        try:
            if echo:
                art = build(name, out_root, verbose=verbose, status=status)
            else:
                with _to_file(f):
                    art = build(name, out_root, verbose=verbose,
                                status=status)
        except BaseException as exc:
            first = str(exc).splitlines()[0] if str(exc) else \
                type(exc).__name__
            status(f"[{name}] failed: {first} (full log: {tmp_log})")
            raise
    final = os.path.join(out_root, name, "log.txt")
    os.replace(tmp_log, final)
    return art


def build(name: str, out_root: str, *, verbose: int = 0, status=None):
    from tfcompress.pipeline import jobs as pipeline
    from tfcompress.pipeline.stages import compress
    from tfcompress.pipeline.recipe import Recipe

    sample = SAMPLES[name]
    (x, y), (x_test, y_test) = sample.load_data()
    model = sample.build_model()
    sample.compile_model(model)
    started = time.perf_counter()
    status = status or (lambda m: print(m, file=sys.stderr))
    status(f"[{name}] training float model ({sample.EPOCHS} epochs)")
    model.fit(x, y, epochs=sample.EPOCHS, batch_size=sample.BATCH_SIZE,
              verbose=verbose)
    deployable, stages, layers = model, None, None
    if sample.RECIPE:
        rec = Recipe.load(sample.RECIPE)
        rec.fit["verbose"] = verbose or rec.fit["verbose"]
        status(f"[{name}] recipe {rec.name}: " + " -> ".join(
            s.kind for s in rec.stages))
        result = compress(model, (x, y), (x_test, y_test), rec)
        deployable, stages, layers = result.model, result.history, result.report
    train_s = round(time.perf_counter() - started, 1)
    art = pipeline.convert_and_validate(
        deployable, x, x_test, y_test, target="micro", mode="int8",
        out_dir=os.path.join(out_root, name), name=name, float_model=model,
        stages=stages, layer_report=layers, android=True,
        labels=sample.LABELS, normalization=sample.NORMALIZATION,
        log=status)
    art.report["timings"]["train_s"] = train_s
    return art


def _row(art) -> dict:
    r = art.report
    lite, micro = r["validation"]["litert"], r["validation"].get("micro", {})
    metric = "accuracy" if "accuracy" in lite else "mae"
    return {
        "model": r["name"],
        "metric": metric,
        "float": r["float"].get(metric),
        "int8": lite.get(metric),
        "agreement": lite.get("agreement"),
        "float_bytes": r["float"]["bytes"],
        "int8_bytes": r["tflite"]["bytes"],
        "gzip_bytes": r["tflite"]["gzip_bytes"],
        # what the C source ships: its array and kTensorArenaSize (32-bit)
        "array_bytes": r.get("micro", {}).get("array_bytes"),
        "arena": r.get("micro", {}).get("arena", {}).get(
            "bytes", micro.get("arena_bytes")),
        "passed": art.passed,
    }


def _cell(value, spec: str) -> str:
    """``value`` formatted, or ``-`` where a runtime reported nothing."""
    return "-" if value is None else format(value, spec)


def table(rows) -> str:
    head = ("model", "metric", "float", "int8", "agree", "float B", "int8 B",
            "gzip B", "C arr B", "arena B", "valid")
    form = "{:<8} {:<8} {:>7} {:>7} {:>6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6}"
    lines = [form.format(*head)]
    for r in rows:
        lines.append(form.format(
            r["model"], r["metric"], _cell(r["float"], ".4f"),
            _cell(r["int8"], ".4f"), _cell(r["agreement"], ".3f"),
            _cell(r["float_bytes"], ","), _cell(r["int8_bytes"], ","),
            _cell(r["gzip_bytes"], ","), _cell(r.get("array_bytes"), ","),
            _cell(r["arena"], ","), "ok" if r["passed"] else "FAIL"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build")
    parser.add_argument("--only", choices=sorted(SAMPLES), action="append")
    parser.add_argument("--verbose", type=int, default=2,
                        help="Keras fit verbosity in the log (2: one line "
                             "per epoch)")
    parser.add_argument("-v", "--echo", action="store_true",
                        help="print the whole log on the terminal too")
    args = parser.parse_args(argv)
    rows = [_row(build_logged(n, args.out, verbose=args.verbose,
                              echo=args.echo))
            for n in (args.only or sorted(SAMPLES))]
    print(table(rows))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
