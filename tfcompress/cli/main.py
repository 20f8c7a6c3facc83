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
from tfcompress.cli import judging, printing
from tfcompress.cli.model_input import (import_modules, import_option,
                                        data_for, load_model_and_data,
                                        unroll_option)

TARGETS = ("micro", "android")
MODES = ("int8", "float16", "dynamic", "int16x8", "float32", "int4")
#: converters.conversion.app_io.IO_TYPES (not imported: keeps --help fast)
IO_TYPES = ("uint8", "int8", "float32")


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
    """A status line on stderr (none with ``--quiet``)."""
    from converters import progress
    if progress.verbosity() > 0:
        click.echo(msg, err=True)


def _load_data(path: str):
    from tfcompress.pipeline.data import load_npz
    return load_npz(path)


def _finish(art) -> None:
    printing.summary(art.report)
    if art.report["validation"].get("failure"):  # the accuracy guard
        _fail(art.report["validation"]["failure"])
    if not art.passed:
        _fail(f"validation failed for {art.name}: "
              f"{judging.failure(art.report)}")


def _c_name(ctx, param, value):
    if value is None:
        return None
    from converters.targets.micro_emit import check_name
    try:
        return check_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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
        click.option("--name", "c_name", default=None, callback=_c_name,
                     help="micro: C++ namespace and file prefix of the "
                          "emitted sources (NAME_data.h/.cc), so several "
                          "models fit in one firmware [default: model]."),
        click.option("--labels", "labels_path", type=click.Path(),
                     default=None,
                     help="android: text file, one class name per line."),
        click.option("--normalization", default=None, metavar="MEAN,STD",
                     help="android: input normalization the app applies, "
                          "e.g. 0.5,0.25."),
        click.option("--unsafe", is_flag=True,
                     help="Allow loading models that carry code (Lambda "
                          "layers)."),
        click.option("--io", "io", type=click.Choice(IO_TYPES), default=None,
                     help="android: I/O type around the int8 model "
                          "[default: uint8 for image tasks, else float32]."),
        click.option("--sample-rate", type=int, default=None,
                     help="android: audio sample rate in Hz (audio "
                          "classifiers)."),
        click.option("--model-info", multiple=True, metavar="KEY=VALUE",
                     help="android: metadata name, description, version, "
                          "author or license (repeatable)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfcompress")
@click.option("-q", "--quiet", is_flag=True,
              help="Only results and errors: no progress, no status lines.")
@click.option("-v", "--verbose", count=True,
              help="More detail (Keras' per-epoch lines; -vv: TensorFlow's "
                   "own logs).")
def main(quiet: bool = False, verbose: int = 0):
    """Compress Keras models for Android and microcontrollers.

    \b
    Example:
      tfcompress optimize model.keras --data data.npz \\
          --recipe pcqat --target micro --out build/mymodel
    """
    import os

    from converters import progress
    level = 0 if quiet else 1 + verbose
    progress.set_verbosity(level)
    if level >= 3:
        os.environ["TFCOMPRESS_TF_LOGS"] = "1"


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
              help="Seeded share of DATA.npz that restores each stage's "
                   "best epoch and carries the verdict; it trains too "
                   "unless the recipe sets fit.all_data: false.")
@click.option("--checkpoint-dir", type=click.Path(), default=None,
              help="Save each finished stage; a re-run resumes from it.")
@_target_options
@judging.options
@click.option("--strategy", type=click.Choice(["none", "mirrored",
                                               "multiworker"]),
              default="none", show_default=True,
              help="tf.distribute strategy to train under; multiworker reads "
                   "TF_CONFIG and only the chief writes --out.")
@click.option("--val", "val_path", type=click.Path(), default=None,
              help="Separate validation DATA.npz; all of --data then trains "
                   "(--holdout is ignored).")
@click.option("--epochs", type=float, default=None,
              help="Multiply every stage's epochs (e.g. 2 or 0.5).")
@click.option("--seed", type=int, default=None,
              help="Seed the training for a reproducible run.")
@click.option("--max-accuracy-drop", type=float, default=0.01,
              show_default=True,
              help="Largest accuracy loss vs the float model and vs int8 "
                   "PTQ, a fraction (0.01 = 1 point); more is rejected.")
@import_option
@unroll_option
@_errors
def optimize(model, data_path, recipe, target, out_dir, holdout,
             checkpoint_dir, device, ram, flash, c_name, labels_path,
             normalization, unsafe, tasks, tolerances, strategy, val_path,
             epochs, seed, max_accuracy_drop, imports, unroll, **android):
    """Run a compression recipe on MODEL, convert, validate, write artifacts.

    \b
    Example:
      tfcompress optimize model.keras --data data.npz \\
          --recipe pcqat --target android --out build/m
    """
    from tfcompress.pipeline.recipe import Recipe
    rec = Recipe.load(recipe)
    if epochs is not None and epochs <= 0:
        raise click.BadParameter(f"should be > 0, got {epochs}",
                                 param_hint="--epochs")
    if not 0 <= max_accuracy_drop < 1:
        raise click.BadParameter(
            f"a fraction in [0, 1) (0.01 = 1 point), got {max_accuracy_drop}",
            param_hint="--max-accuracy-drop")
    from tfcompress.pipeline.distribute import get_strategy
    strategy = get_strategy(strategy)  # multiworker: before any TF work
    keras_model, x, y = load_model_and_data(model, data_path, unsafe=unsafe,
                                            imports=imports)
    val = None
    if val_path is not None:
        val = data_for(keras_model, val_path)
        if val[1] is None:
            raise click.BadParameter(f"{val_path} has no targets 'y'",
                                     param_hint="--val")
    from tfcompress.pipeline import jobs as pipeline
    art = pipeline.optimize(keras_model, x, y, rec, target=target,
                            out_dir=out_dir, name=_stem(model),
                            holdout=holdout, log=_log, unroll=unroll,
                            checkpoint_dir=checkpoint_dir, c_name=c_name,
                            device=_device(device, ram, flash),
                            strategy=strategy, val=val, epochs=epochs,
                            seed=seed, max_accuracy_drop=max_accuracy_drop,
                            judging=judging.parse(tasks, tolerances),
                            **_android_options(
                                labels_path, normalization,
                                task=judging.android_task(tasks), **android))
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
@judging.options
@import_option
@unroll_option
@_errors
def convert(model, data_path, target, mode, out_dir, device, ram, flash,
            c_name, labels_path, normalization, unsafe, tasks, tolerances,
            imports, unroll, **android):
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
        judging=judging.parse(tasks, tolerances), c_name=c_name,
        unroll=unroll,
        **_android_options(labels_path, normalization,
                           task=judging.android_task(tasks), **android))
    _finish(art)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path())
@click.option("--target", type=click.Choice(TARGETS), default="android",
              show_default=True, help="micro also runs the model in TFLM.")
@click.option("--reference", type=click.Path(), default=None,
              help="The float model (Keras file, SavedModel folder or "
                   ".tflite) the outputs are compared with.")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Classifiers: the accuracy to reach on y when there is "
                   "no --reference (else y must beat chance).")
@judging.options
@import_option
@_errors
def validate(model, data_path, target, reference, min_accuracy, tasks,
             tolerances, imports):
    """Run MODEL.tflite on DATA.npz in LiteRT (and TFLM with --target micro)
    and judge each output by its task.

    With y and no --reference, a classifier must reach --min-accuracy, or
    else beat always predicting the most frequent label. For micro, TFLM is
    also compared with LiteRT.

    \b
    Example:
      tfcompress validate build/digits/model.tflite --data data.npz \
          --target micro --reference digits.keras
    """
    import_modules(imports)   # the --reference model's custom layers
    x, y = _load_data(data_path)
    from tfcompress.pipeline import jobs as pipeline
    rules = judging.parse(tasks, tolerances)
    if min_accuracy is not None:
        rules["min_accuracy"] = min_accuracy
    art = pipeline.validate_file(model, x, y, target=target,
                                 data_name=data_path, reference=reference,
                                 judging=rules)
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
@click.option("--weight-bits", is_flag=True,
              help="Mixed precision: choose 8/4/2/1-bit weights per layer "
                   "(TFLM LUT); --max-bytes is then the flash bytes of the "
                   "LUT-compressed int8 model.")
@click.option("--activations", is_flag=True, help="int8/int16 activations "
              "per layer (android: also float), applied and validated.")
@click.option("--target", type=click.Choice(TARGETS), default="micro",
              show_default=True, help="The target of --activations.")
@import_option
@unroll_option
@_errors
def sensitivity(model, data_path, max_bytes, max_accuracy_drop, epochs,
                out_dir, unsafe, weight_bits, activations, target, imports,
                unroll):
    """Measure per-layer sensitivity and write a recipe that meets a budget.

    \b
    Example:
      tfcompress sensitivity model.keras --data val.npz --max-bytes 12000 \\
          --out build/sens && tfcompress optimize model.keras --data d.npz \\
          --recipe build/sens/recipe.yaml --target micro --out build/m
    """
    if (max_bytes is None) == (max_accuracy_drop is None) and not (
            activations and max_bytes is not None):
        raise click.UsageError("give exactly one of --max-bytes and "
                               "--max-accuracy-drop (both with --activations)")
    keras_model, x, y = load_model_and_data(
        model, data_path, unsafe=unsafe, imports=imports, trains="sensitivity",
        unroll=unroll)
    _log(f"[{_stem(model)}] sweeping {len(keras_model.layers)} layers")
    if activations:
        return printing.precision(keras_model, x, y, target, max_bytes,
                                  max_accuracy_drop, out_dir, weight_bits)
    if weight_bits:
        return printing.mixed_precision(keras_model, x, y, max_bytes,
                                max_accuracy_drop, epochs, out_dir)
    printing.sensitivity(keras_model, x, y, max_bytes, max_accuracy_drop,
                         epochs, out_dir)


def _android_options(labels_path, normalization, io=None, task=None,
                     sample_rate=None, model_info=()) -> dict:
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
    about = {}
    for item in model_info:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"expected KEY=VALUE such as author=ACME, got {item!r}",
                param_hint="--model-info")
        about[key.strip()] = value
    return {"labels": labels, "normalization": norm,
            "android_options": {"io": io, "task": task,
                                "sample_rate": sample_rate, "about": about}}


def _stem(path: str) -> str:
    import os
    base = os.path.basename(os.path.normpath(path))
    return base.split(".")[0] or "model"


if __name__ == "__main__":  # pragma: no cover
    main()
