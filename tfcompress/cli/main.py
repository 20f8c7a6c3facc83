"""The ``tfcompress`` command line: parse, call the library, print.

TensorFlow is imported inside the commands, never at module level, so
``tfcompress --help`` starts fast.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from tfcompress import __version__
from tfcompress.cli.model_input import (import_option, load_model_and_data,
                                        unroll_option)

TARGETS = ("micro", "android")
MODES = ("int8", "float16", "dynamic", "int16x8", "float32", "int4")


def _fail(message: str, code: int = 1):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _errors(fn):
    """Turn the toolkit's errors into one line on stderr and exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except (ValueError, FileNotFoundError, RuntimeError, OSError,
                TypeError) as exc:
            text = str(exc).strip().splitlines()
            _fail(text[0] if text else type(exc).__name__)
    return wrapper


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def _load_data(path: str):
    from tfcompress.pipeline.data import load_npz
    return load_npz(path)


def _summary(report: dict) -> None:
    lite = report["tflite"]
    val = report["validation"]
    rows = [("tflite bytes", lite["bytes"]), ("gzip bytes", lite["gzip_bytes"]),
            ("input/output", f"{lite['input'].get('dtype')}/"
                             f"{lite['output'].get('dtype')}"),
            ("ops", ",".join(lite["ops"]))]
    if "float" in report:
        rows.insert(0, ("float32 bytes", report["float"]["bytes"]))
        if report["float"].get("accuracy") is not None:
            rows.append(("float accuracy", f"{report['float']['accuracy']:.4f}"))
    for key in ("accuracy", "agreement", "max_abs_error"):
        if key in val.get("litert", {}):
            rows.append((f"litert {key}", f"{val['litert'][key]:.4f}"))
    micro = val.get("micro")
    if micro:
        rows += [("tflm agreement", f"{micro['agreement']:.4f}"),
                 ("tflm max diff (LSB)", micro.get("max_abs_lsb")),
                 ("arena bytes (min / recommended)",
                  f"{micro['arena_bytes']} / {micro['arena_recommended']}")]
    budget = report.get("budget")
    if budget:
        rows.append((f"fits {budget['profile']}",
                     f"{budget['fits']} (RAM headroom {budget['ram']['headroom']} B,"
                     f" flash headroom {budget['flash']['headroom']} B)"))
    rows.append(("validation", "passed" if val.get("passed") else "FAILED"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _finish(art) -> None:
    _summary(art.report)
    if not art.passed:
        _fail(f"validation failed for {art.name}: "
              f"{json.dumps(art.report['validation'].get('litert', {}))}")


def _target_options(fn):
    """Options ``optimize`` and ``convert`` share: micro device budget,
    Android labels and normalization, and ``--unsafe`` loading."""
    options = [
        click.option("--device", default=None,
                     help="micro: device profile to check model + arena "
                          "against (cortex-m0+, cortex-m4, cortex-m7, "
                          "esp32-s3, nrf52840, rp2040)."),
        click.option("--ram", type=int, default=None,
                     help="micro: custom RAM bytes."),
        click.option("--flash", type=int, default=None,
                     help="micro: custom flash bytes."),
        click.option("--labels", "labels_path", type=click.Path(),
                     default=None,
                     help="android: text file, one class name per line."),
        click.option("--normalization", default=None, metavar="MEAN,STD",
                     help="android: input normalization the app applies, "
                          "e.g. 0.5,0.25."),
        click.option("--unsafe", is_flag=True,
                     help="Allow loading models that carry code (Lambda "
                          "layers)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfcompress")
def main():
    """Compress Keras models for Android and microcontrollers.

    \b
    Example:
      tfcompress optimize model.keras --data data.npz \\
          --recipe pcqat --target micro --out build/mymodel
    """


@main.command()
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="DATA.npz with x (inputs) and y (integer labels).")
@click.option("--recipe", required=True, type=click.Path(),
              help="Recipe YAML/JSON file, or a built-in name (pcqat, prune_qat, structured_2of4).")
@click.option("--target", type=click.Choice(TARGETS), default="android",
              show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Folder for model.tflite, report.json/.md, plots, C files.")
@click.option("--holdout", default=0.2, show_default=True,
              help="Seeded share of DATA.npz kept for validation.")
@click.option("--checkpoint-dir", type=click.Path(), default=None,
              help="Save each finished stage; a re-run resumes from it.")
@_target_options
@click.option("--strategy", type=click.Choice(["none", "mirrored",
                                               "multiworker"]),
              default="none", show_default=True,
              help="tf.distribute strategy to train under; multiworker reads "
                   "TF_CONFIG and only the chief writes --out.")
@import_option
@_errors
def optimize(model, data_path, recipe, target, out_dir, holdout,
             checkpoint_dir, device, ram, flash, labels_path, normalization,
             unsafe, strategy, imports):
    """Run a compression recipe on MODEL, convert, validate, write artifacts.

    \b
    Example:
      tfcompress optimize model.keras --data data.npz \\
          --recipe pcqat --target android --out build/m
    """
    from tfcompress.pipeline.recipe import Recipe
    rec = Recipe.load(recipe)
    from tfcompress.pipeline.distribute import get_strategy
    strategy = get_strategy(strategy)  # multiworker: before any TF work
    keras_model, x, y = load_model_and_data(model, data_path, unsafe=unsafe,
                                            imports=imports)
    from tfcompress.pipeline import jobs as pipeline
    art = pipeline.optimize(keras_model, x, y, rec, target=target,
                            out_dir=out_dir, name=_stem(model),
                            holdout=holdout, log=_log,
                            checkpoint_dir=checkpoint_dir,
                            device=_device(device, ram, flash),
                            strategy=strategy,
                            **_android_options(labels_path, normalization))
    _finish(art)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="DATA.npz: x for calibration and validation, optional y.")
@click.option("--target", type=click.Choice(TARGETS), default="android",
              show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="int8",
              show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path())
@_target_options
@import_option
@unroll_option
@_errors
def convert(model, data_path, target, mode, out_dir, device, ram, flash,
            labels_path, normalization, unsafe, imports, unroll):
    """Convert MODEL (.keras, .h5, SavedModel dir) to a validated .tflite.

    \b
    Example:
      tfcompress convert model.keras --data data.npz --target micro --out build/m
    """
    keras_model, x, y = load_model_and_data(model, data_path, unsafe=unsafe,
                                            imports=imports)
    from tfcompress.pipeline import jobs as pipeline
    art = pipeline.convert_and_validate(
        keras_model, x, x, y, target=target, mode=mode, out_dir=out_dir,
        name=_stem(model), log=_log, device=_device(device, ram, flash),
        unroll=unroll, **_android_options(labels_path, normalization))
    _finish(art)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path())
@click.option("--target", type=click.Choice(TARGETS), default="android",
              show_default=True, help="micro also runs the model in TFLM.")
@import_option
@_errors
def validate(model, data_path, target, imports):
    """Run MODEL.tflite on DATA.npz in LiteRT (and TFLM with --target micro).

    \b
    Example:
      tfcompress validate build/digits/model.tflite --data data.npz --target micro
    """
    from tfcompress.cli.model_input import import_modules
    import_modules(imports)
    x, y = _load_data(data_path)
    from tfcompress.pipeline import jobs as pipeline
    art = pipeline.validate_file(model, x, y, target=target,
                                 data_name=data_path)
    _finish(art)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_errors
def inspect(model, as_json):
    """Show ops, tensors, quantization, sizes and compatibility of a .tflite.

    \b
    Example:
      tfcompress inspect build/digits/model.tflite --json
    """
    from converters.tflite import inspect as inspector
    from tfcompress.pipeline.jobs import inspect_file
    report = inspect_file(model)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(inspector.format_text(report))


@main.command()
@click.argument("model", type=click.Path())
@click.option("--threads", default="1,4", show_default=True,
              help="Comma-separated thread counts.")
@click.option("--runs", default=50, show_default=True)
@click.option("--warmup", default=5, show_default=True)
@_errors
def bench(model, threads, runs, warmup):
    """Measure LiteRT latency of a .tflite (median and p90).

    \b
    Example:
      tfcompress bench build/digits/model.tflite --threads 1,4
    """
    from tfcompress.pipeline.jobs import bench_file
    counts = tuple(int(t) for t in threads.split(",") if t.strip())
    result = bench_file(model, threads=counts, runs=runs, warmup=warmup)
    click.echo(json.dumps(result, indent=2))


def _device(name, ram, flash):
    if (ram is None) != (flash is None):
        raise click.UsageError("give both --ram and --flash, or --device")
    if ram is not None:
        return {"ram": ram, "flash": flash}
    if name is not None:
        from converters.targets import budgets
        budgets.get(name)  # an unknown name fails before any training
    return name


@main.command()
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="DATA.npz: x and integer labels y (held-out data).")
@click.option("--max-bytes", type=int, default=None,
              help="Target gzip bytes of the int8 .tflite.")
@click.option("--max-accuracy-drop", type=float, default=None,
              help="Target accuracy drop, a fraction (0.01 = 1 point).")
@click.option("--epochs", default=2, show_default=True,
              help="Epochs per stage in the written recipe.")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Folder for sensitivity.json/.png and recipe.yaml.")
@click.option("--unsafe", is_flag=True,
              help="Allow loading models that carry code (Lambda layers).")
@import_option
@_errors
def sensitivity(model, data_path, max_bytes, max_accuracy_drop, epochs,
                out_dir, unsafe, imports):
    """Measure per-layer sensitivity and write a recipe that meets a budget.

    \b
    Example:
      tfcompress sensitivity model.keras --data val.npz --max-bytes 12000 \\
          --out build/sens && tfcompress optimize model.keras --data d.npz \\
          --recipe build/sens/recipe.yaml --target micro --out build/m
    """
    if (max_bytes is None) == (max_accuracy_drop is None):
        raise click.UsageError("give exactly one of --max-bytes and "
                               "--max-accuracy-drop")
    keras_model, x, y = load_model_and_data(model, data_path, unsafe=unsafe,
                                            imports=imports)
    from tfcompress.analysis import sensitivity as sens
    _log(f"[{_stem(model)}] sweeping {len(keras_model.layers)} layers")
    result = sens.analyze(keras_model, x, y)
    plan = sens.choose(keras_model, result, x, y=y, max_bytes=max_bytes,
                       max_accuracy_drop=max_accuracy_drop)
    paths = sens.write(result, plan, out_dir, epochs=epochs)
    click.echo(f"baseline int8 gzip bytes  {plan.baseline_bytes}")
    click.echo(f"estimated gzip bytes      {plan.estimated_bytes}")
    click.echo(f"predicted accuracy drop   {plan.predicted_drop:.4f}")
    for key in ("recipe", "png", "json"):
        if key in paths:
            click.echo(f"{key:<26}{paths[key]}")


def _android_options(labels_path, normalization) -> dict:
    labels = None
    if labels_path is not None:
        import os
        if not os.path.isfile(labels_path):
            raise FileNotFoundError(f"labels file {labels_path!r} does not exist")
        with open(labels_path) as f:
            labels = [line.strip() for line in f if line.strip()]
    norm = None
    if normalization is not None:
        try:
            mean, std = (float(v) for v in normalization.split(","))
        except ValueError:
            raise click.BadParameter(
                f"expected MEAN,STD such as 0.5,0.25, got {normalization!r}",
                param_hint="--normalization") from None
        norm = {"mean": mean, "std": std}
    return {"labels": labels, "normalization": norm}


def _stem(path: str) -> str:
    import os
    base = os.path.basename(os.path.normpath(path))
    return base.split(".")[0] or "model"


if __name__ == "__main__":  # pragma: no cover
    main()
