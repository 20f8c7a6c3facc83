"""The end-to-end jobs behind the CLI and ``make tflite``: compress (optional),
convert, validate, write artifacts and reports.

Both functions return the :class:`converters.Artifact`; its ``report`` holds
everything and ``passed`` says whether validation passed.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from tfcompress.pipeline import data as datasets
from tfcompress.analysis import stats


def _say(log: Optional[Callable[[str], None]], msg: str) -> None:
    if log is not None:
        log(msg)


def float_baseline(model, x_eval, y_eval) -> dict:
    """Size and accuracy of the uncompressed float32 .tflite."""
    from converters import convert_bytes
    from converters.runtimes import litert
    from converters.runtimes import metrics as validate
    tflite = convert_bytes(model, mode="float32")
    run = litert.run(tflite, x_eval)
    out = {"bytes": len(tflite), **validate.compare(run.outputs, None, y_eval)}
    out.pop("samples", None)
    out["tflite"] = tflite  # not serialized: popped by convert_and_validate
    return out


def android_variants(art, model, x_calib, x_eval, y_eval, float_tflite,
                     out_dir, *, labels=None, normalization=None, log=None):
    """Write ``out_dir/android/`` (int8 + float16 variants with signatures,
    labels, normalization) and measure LiteRT latency of float32 vs int8 vs
    float16 side by side. Adds ``android``, ``latency`` and a float16 entry
    in ``variants`` to the report."""
    import os

    from converters.targets import android
    from converters.runtimes import latency
    from converters.runtimes import litert
    from converters.runtimes import metrics as validate
    folder = os.path.join(out_dir, "android")
    _say(log, f"[{art.name}] writing Android variants to {folder}")
    info = android.write_android(model, x_calib, folder, labels=labels,
                                 normalization=normalization, name="model")
    art.report["android"] = {k: v for k, v in info.items() if k != "files"}
    art.report["android"]["files"] = [os.path.relpath(f, out_dir)
                                      for f in info["files"]]
    with open(os.path.join(folder, info["variants"]["fp16"]["file"]),
              "rb") as f:
        fp16 = f.read()
    run = litert.run(fp16, x_eval)
    art.report["variants"].append(
        {"name": "float16 android", "bytes": len(fp16),
         "accuracy": validate.compare(run.outputs, None, y_eval).get(
             "accuracy")})
    _say(log, f"[{art.name}] timing float32 / int8 / float16 in LiteRT")
    timing = latency.compare({"float32": float_tflite, "int8": art.tflite,
                              "float16": fp16}, threads=(1, 4), runs=30,
                             warmup=3)
    timing.pop("text", None)
    art.report["latency"] = timing


def convert_and_validate(model, x_calib, x_eval, y_eval=None, *,
                         target="android", mode="int8", out_dir=None,
                         name="model", float_model=None, stages=None,
                         layer_report=None, log=None, device=None,
                         labels=None, normalization=None, extra=None,
                         android=None, unroll=False):
    """Convert ``model``, validate it on ``(x_eval, y_eval)``, save to
    ``out_dir``. ``float_model`` (default: ``model``) gives the float baseline
    for size and accuracy. ``android`` (default: ``target == "android"``)
    also writes ``out_dir/android/`` and the latency comparison.
    ``x_calib``/``x_eval`` are arrays, or dicts keyed by input name for a
    model with several inputs; ``unroll`` unrolls recurrent layers."""
    from converters import convert
    if not isinstance(model, str):  # a SavedModel path has no Keras weights
        datasets.check_weights(model)
    for key, array in _named(x_calib).items():
        datasets.check_x(np.asarray(array), f"representative data {key}")
    started = time.perf_counter()
    _say(log, f"[{name}] converting ({target}, {mode}) with "
              f"{min(_rows(x_calib), 500)} calibration samples")
    art = convert(model, x_calib, target=target, mode=mode, name=name,
                  unroll=unroll)
    art.device = device
    _say(log, f"[{name}] validating on {_rows(x_eval)} samples in LiteRT"
              + (" and TFLM (arena bisection)" if target == "micro" else ""))
    art.validate(x_eval, y_eval, require=False)
    baseline = float_baseline(float_model or model, x_eval, y_eval)
    float_tflite = baseline.pop("tflite")
    art.report["float"] = baseline
    if not isinstance(model, str):  # a SavedModel path has no Keras layers
        art.report["compressed_keras"] = stats.summary(model)
    lite = art.report["validation"]["litert"]
    art.report["variants"] = [
        {"name": "float32", "bytes": baseline["bytes"],
         "accuracy": baseline.get("accuracy")},
        {"name": f"{mode} {target}", "bytes": art.report["tflite"]["bytes"],
         "accuracy": lite.get("accuracy")}]
    if stages is not None:
        art.report["stages"] = stages
    if layer_report is not None:
        art.report["compression"] = layer_report
    art.report.setdefault("timings", {})["total_s"] = round(
        time.perf_counter() - started, 2)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(art.report.get(key), dict):
            art.report[key].update(value)
        else:
            art.report[key] = value
    if android is None:
        android = target == "android" and mode == "int8"
    if out_dir and android and not isinstance(model, str):
        android_variants(art, model, x_calib, x_eval, y_eval, float_tflite,
                         out_dir, labels=labels, normalization=normalization,
                         log=log)
    if out_dir:
        art.save(out_dir)
        _say(log, f"[{name}] wrote {out_dir}")
    return art


def _named(x) -> dict:
    return dict(x) if isinstance(x, dict) else {"x": x}


def _rows(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def optimize(model, x, y, recipe, *, target="android", out_dir=None,
             name="model", holdout=datasets.HOLDOUT, log=None, device=None,
             strategy=None, labels=None, normalization=None, **compress_kw):
    """Run ``recipe`` on ``model`` with ``(x, y)``, then convert and validate
    on a seeded ``holdout`` share of the data.

    ``strategy`` (a ``tf.distribute`` strategy or a name: ``none``,
    ``mirrored``, ``multiworker``) is what ``compress`` trains under; in a
    multi-worker cluster only the chief writes ``out_dir``."""
    from tfcompress.pipeline import distribute
    from tfcompress.pipeline.recipe import get
    rec = get(recipe)  # fail on a bad recipe before anything else
    datasets.check_for_model(x, y, model)
    datasets.check_weights(model)
    from tfcompress.pipeline import targets
    y, rec = targets.training_targets(model, x, y, rec, log=log, name=name)
    compress = targets.compressor(model)
    (x_tr, y_tr), (x_ho, y_ho) = datasets.split(x, y, holdout)
    started = time.perf_counter()
    _say(log, f"[{name}] recipe {rec.name}: "
              + " -> ".join(f"{s.kind}({s.epochs} ep)" for s in rec.stages))
    strategy = distribute.get_strategy(strategy)
    result = compress(model, (x_tr, y_tr), None, rec, strategy=strategy,
                      **compress_kw)
    train_s = round(time.perf_counter() - started, 2)
    if out_dir and not distribute.is_chief(strategy):
        _say(log, f"[{name}] {distribute.worker_name(strategy)} is not the "
                  f"chief: {out_dir} is left to the chief")
    # saving converts variants with the model: every worker does it in step,
    # the non-chief ones into a temporary folder
    with distribute.write_dir(out_dir, strategy) as write_to:
        return convert_and_validate(
            result.model, x_tr, x_ho, y_ho, target=target, out_dir=write_to,
            name=name, float_model=model, stages=result.history,
            layer_report=result.report, log=log, device=device,
            labels=labels, normalization=normalization,
            extra={"recipe": rec.to_dict(), "timings": {"train_s": train_s}})


def load_tflite(path: str) -> bytes:
    """The bytes of a user's .tflite file, structurally verified
    (:func:`converters.verify.verify`) so that no interpreter ever sees a
    malformed flatbuffer. Raises ``InvalidModelError`` naming the file."""
    import os
    from converters.tflite.verify import verify
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    verify(data, name=path)
    return data


def read_tflite(path: str):
    """``(bytes, ModelInfo)`` of a verified .tflite file; any parse failure
    is one ``InvalidModelError`` line naming the file."""
    from converters.tflite.flatbuffer import InvalidModelError, read
    data = load_tflite(path)
    try:
        return data, read(data)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{path}: {exc}") from None


def inspect_file(path: str) -> dict:
    """:func:`converters.inspect.inspect` of a verified .tflite file (pure
    Python parsing: no interpreter runs)."""
    from converters.tflite import inspect as inspector
    from converters.tflite.flatbuffer import InvalidModelError
    data, _ = read_tflite(path)
    try:
        return inspector.inspect(data)
    except Exception as exc:  # noqa: BLE001 - a verified but odd file
        raise InvalidModelError(
            f"{path}: cannot describe the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def bench_file(path: str, **kwargs) -> dict:
    """:func:`converters.latency.measure` of a .tflite file, with the
    interpreter in a child process (:mod:`converters.sandbox`)."""
    from converters.runtimes import latency
    from converters.runtimes import sandbox
    data, _ = read_tflite(path)
    return sandbox.call(latency.measure, data, name=path,
                        what="the LiteRT interpreter",
                        preload=("ai_edge_litert.interpreter",), **kwargs)


def validate_file(path: str, x: np.ndarray, y=None, *, target="android",
                  timeout: float = 900.0, data_name: str = "data"):
    """Validate a .tflite file on data (no float model: accuracy, and TFLM
    agreement with LiteRT for micro).

    The file is verified first; the interpreters run in a child process
    (:mod:`converters.sandbox`), so a model that crashes them ends in one
    ``SandboxError`` line instead of killing the caller.
    """
    from converters import Artifact
    from converters.runtimes import sandbox
    from converters.tflite.flatbuffer import InvalidModelError
    tflite, info = read_tflite(path)
    _check_data(info, x, y, data_name)
    mode = _mode_of(tflite)
    try:
        art = Artifact(tflite, target=target, mode=mode, name=path)
    except (ValueError, RuntimeError):
        raise
    except Exception as exc:  # noqa: BLE001 - a verified but odd file
        raise InvalidModelError(f"{path}: cannot read the model "
                                f"({type(exc).__name__}: {exc})") from None
    try:
        art.report, art.extra_files = sandbox.call(
            _validate_in_child, tflite, x, y, target, mode, path, name=path,
            what="validation (LiteRT/TFLM)", timeout=timeout,
            preload=_VALIDATE_IMPORTS)
    except (ValueError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()
        if not text or path in text[0]:
            raise
        try:  # the interpreter's words, with the file they are about
            named = type(exc)(f"{path}: {text[0]}")
        except Exception:  # noqa: BLE001 - an exception without (msg)
            named = RuntimeError(f"{path}: {text[0]}")
        raise named from None
    return art


#: what the validation child needs: imported once in the sandbox server
_VALIDATE_IMPORTS = ("converters.conversion.artifact", "converters.targets.micro",
                     "ai_edge_litert.interpreter",
                     "tensorflow.lite.python.schema_py_generated",
                     "tensorflow.lite.tools.flatbuffer_utils")


def _validate_in_child(tflite: bytes, x, y, target: str, mode: str,
                       name: str):
    """Runs in the sandbox child: the interpreters see the bytes here."""
    from converters import Artifact
    art = Artifact(tflite, target=target, mode=mode, name=name)
    art.validate(x, y, require=False)
    return art.report, art.extra_files


def _check_data(info, x, y, name: str) -> None:
    """``x`` fits the model's first input, ``y`` its output classes."""
    if not info.inputs or not info.outputs:
        return
    x = np.asarray(x)
    shape = info.input_details[0].shape
    datasets.check_x(x, f"{name}:x", [None, *shape[1:]] if shape else None)
    if y is not None:
        out = info.output_details[0].shape
        classes = out[-1] if len(out) == 2 and out[-1] > 1 else None
        datasets.check_y(np.asarray(y), len(x), f"{name}:y", classes)


def _mode_of(tflite: bytes) -> str:
    from converters import read
    info = read(tflite)
    dtypes = {t.dtype for t in info.input_details}
    if dtypes == {"INT8"}:
        return "int8"
    if dtypes == {"INT16"}:
        return "int16x8"
    consts = {t.dtype for t in info.tensors if t.buffer_bytes}
    if "INT4" in consts:
        return "int4"
    if "FLOAT16" in consts:
        return "float16"
    return "dynamic" if "INT8" in consts else "float32"
