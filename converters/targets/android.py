"""The Android target: int8 (XNNPACK) and float16 (GPU) variants side by side.

``write_android`` writes into ``out_dir``::

    model_int8.tflite   full-integer int8, for the CPU (XNNPACK)
    model.tflite        the same bytes: the default model of the app
    model_fp16.tflite   float16 weights, float I/O, for the GPU delegate
    model.json          sidecar: signature, I/O dtypes and quantization per
                        variant, labels, input normalization, sizes, sha256
    labels.txt          one label a line (when labels are given)

Both variants carry the ``serving_default`` signature with the Keras input
layer names as input names and the Keras output layer names as output names
(checked here in the flatbuffer: app code calls
``interpreter.getSignatureRunner("serving_default")`` with those names,
whatever the tensor order). tfcompress QAT keeps layer names, so a QAT
model's signature equals its float model's.

Metadata: each variant carries standard TFLite Metadata (``TFLITE_METADATA``:
task, labels as an associated file packed in the .tflite, normalization,
value ranges; :mod:`converters.targets.android_metadata`, packed by
:mod:`converters.targets.metadata_pack`), so MediaPipe Tasks, the TFLite Task
Library and Android Studio's ML Model Binding load it from the file alone.
The int8 variant takes uint8 images (the default for image tasks) or float32
/ int8 tensors (``io``), see :mod:`converters.targets.android_plan`. The
sidecar JSON is also embedded as a plain ``Model.metadata`` entry named
:data:`METADATA_NAME`; ``converters.inspect.metadata(tflite)`` reads it back.

Example:
    >>> report = write_android(model, x_train[:200], "build/android",
    ...                        labels=["cat", "dog"],
    ...                        normalization={"mean": 127.5, "std": 127.5})
    >>> report["variants"]["int8"]["gpu_fallback_ops"]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from converters.tflite import flatbuffer
from converters.targets import gpu
from converters.conversion.modes import convert_bytes
from converters.errors import ConversionError
from converters.targets.android_plan import normalization_spec  # noqa: F401
from converters.targets import android_metadata, metadata_pack

SIGNATURE = "serving_default"
METADATA_NAME = "tfcompress.android"
FORMAT = "tfcompress.android/1"
#: variant -> (converter mode, file suffix, the runtime it is meant for)
VARIANTS = {"int8": ("int8", "int8", "CPU (XNNPACK)"),
            "fp16": ("float16", "fp16", "GPU delegate")}



def keras_io_names(model) -> tuple:
    """(input names, output names) as the converter's signature uses them:
    the Keras input layer names and output layer names."""
    from converters.conversion.signature import input_names, output_names
    return input_names(model), output_names(model)


def check_signature(info: flatbuffer.ModelInfo, inputs: Sequence[str],
                    outputs: Sequence[str], where: str) -> dict:
    """Raise :class:`ConversionError` unless ``info`` has the
    ``serving_default`` signature with exactly these input/output names."""
    sig = info.signatures.get(SIGNATURE)
    if sig is None:
        raise ConversionError(
            f"{where}: no {SIGNATURE!r} signature in the .tflite (found "
            f"{sorted(info.signatures)}); convert a Keras model with "
            "from_keras_model")
    for part, names in (("inputs", inputs), ("outputs", outputs)):
        if sorted(sig[part]) != sorted(names):
            raise ConversionError(
                f"{where}: signature {part} {sorted(sig[part])} differ from "
                f"the Keras {part} {sorted(names)}; name the Keras Input/"
                "output layers and keep the names through compression")
    return sig


def _io_spec(info: flatbuffer.ModelInfo, sig: dict, order: Sequence[str],
             part: str) -> list[dict]:
    rows = []
    for name in order:
        t = info.tensors[sig[part][name]]
        quant = None
        if t.scale:
            quant = {"scale": t.scale[0],
                     "zero_point": t.zero_point[0] if t.zero_point else 0}
        rows.append({"name": name, "tensor": t.name, "index": t.index,
                     "dtype": t.dtype.lower(), "shape": list(t.shape),
                     "quantization": quant})
    return rows


def embed_metadata(tflite: bytes, name: str, data: bytes) -> bytes:
    """Return ``tflite`` with a ``Model.metadata`` entry ``name`` holding
    ``data`` (replacing an entry of that name)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(bytes(data), dtype=np.uint8)
    model.metadata = list(model.metadata or [])
    for entry in model.metadata:
        if entry.name.decode("utf-8", "replace") == name:
            model.buffers[entry.buffer] = buffer
            break
    else:
        model.buffers.append(buffer)
        entry = fb.MetadataT()
        entry.name = name.encode("utf-8")
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def write_android(keras_model, representative_data: np.ndarray,
                  out_dir: str | os.PathLike, *,
                  labels: Sequence[str] | None = None,
                  normalization: dict | None = None,
                  name: str = "model", embed: bool = True,
                  plan=None, int8_tflite: bytes | None = None,
                  **options) -> dict:
    """Convert ``keras_model`` for Android and write the variants + sidecar.

    Args:
        keras_model: a ``tfcompress.keras`` model (plain, stripped or QAT).
        representative_data: float model inputs (already normalized) for
            int8 calibration, e.g. 100-500 training samples.
        out_dir: folder to write into (created).
        labels: class names, one per output class.
        normalization: ``{"mean", "std"}`` or ``{"scale", "offset"}`` that
            the app applies to raw input before feeding the model.
        name: file stem: ``{name}_int8.tflite``, ``{name}_fp16.tflite``,
            ``{name}.tflite``, ``{name}.json``.
        embed: also embed the sidecar in each .tflite as metadata.
        plan: an :class:`android_plan.AndroidPlan` (default: made from the
            arguments and ``options``: ``io``, ``task``, ``sample_rate``,
            ``about``).
        int8_tflite: the int8 model already converted with the plan's I/O
            (default: converted here).

    Returns:
        The report: ``files``, ``signature`` (key, input and output names),
        and per variant ``file``, ``bytes``, ``sha256``, ``runtime``,
        ``inputs``/``outputs`` (dtype, shape, quantization),
        ``gpu_fallback_ops`` and ``gpu_note``.

    Raises:
        ConversionError: conversion failed, or a variant's signature names
            differ from the Keras input/output layer names.
    """
    from converters.files import atomic_write
    if isinstance(keras_model, (str, os.PathLike)):
        raise TypeError("write_android needs an in-memory Keras model (the "
                        "signature names come from its layers); load it with"
                        " converters.load_model first")
    in_names, out_names = keras_io_names(keras_model)
    if plan is None:
        from converters.targets.android_plan import plan as make_plan
        plan = make_plan(keras_model, representative_data, labels=labels,
                         normalization=normalization, **options)
    norm, labels = plan.normalization, plan.labels
    variants: dict[str, dict] = {}
    blobs: dict[str, bytes] = {}
    infos: dict[str, tuple] = {}
    for key, (mode, suffix, runtime) in VARIANTS.items():
        if key == "int8":
            data = int8_tflite or _convert_int8(keras_model,
                                                representative_data, plan)
        else:
            data = convert_bytes(keras_model, representative_data, mode=mode)
        info = flatbuffer.read(data)
        sig = check_signature(info, in_names, out_names, f"{name} {key}")
        if key == "int8" and flatbuffer.float_ops(info):
            raise ConversionError(
                f"{name} int8: computes on float tensors in "
                f"{flatbuffer.float_ops(info)[0]}; replace the layer")
        infos[key] = (info, sig)
        verdict = gpu.check(info)
        variants[key] = {
            "file": f"{name}_{suffix}.tflite", "mode": mode,
            "runtime": runtime,
            "inputs": _io_spec(info, sig, in_names, "inputs"),
            "outputs": _io_spec(info, sig, out_names, "outputs"),
            "gpu_fallback_ops": verdict["fallback_ops"],
            "gpu_note": verdict["note"],
        }
        blobs[key] = data
    sidecar = {
        "format": FORMAT, "name": name,
        "signature": {"key": SIGNATURE, "inputs": in_names,
                      "outputs": out_names},
        "labels": labels,
        "normalization": norm,
        "task": plan.task, "io": plan.io,
        "input_quantization": plan.input_quantization,
        "exact_pixels": _exact_pixels(plan, infos["int8"][0]),
        "default": "int8",
        "variants": variants,
    }
    if embed:
        meta = json.dumps(sidecar, sort_keys=True).encode("utf-8")
        for key, plain in list(blobs.items()):
            blobs[key] = embed_metadata(plain, METADATA_NAME, meta)
            check_signature(flatbuffer.read(blobs[key]), in_names, out_names,
                            f"{name} {key} (with metadata)")
    for key, plain in list(blobs.items()):
        info, sig = infos[key]
        names = {index: n for part in ("inputs", "outputs")
                 for n, index in sig[part].items()}
        metadata, packed = android_metadata.build(
            info, plan.task, names=names, labels=labels, normalization=norm,
            sample_rate=plan.sample_rate, about=plan.about)
        blobs[key] = metadata_pack.populate(plain, metadata, packed)
    for key, data in blobs.items():
        variants[key]["bytes"] = len(data)
        variants[key]["sha256"] = hashlib.sha256(data).hexdigest()
    sidecar["metadata_embedded"] = METADATA_NAME if embed else None
    sidecar["tflite_metadata"] = metadata_pack.METADATA_NAME

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    files = [atomic_write(os.path.join(out_dir, v["file"]), blobs[k])
             for k, v in variants.items()]
    files.append(atomic_write(os.path.join(out_dir, f"{name}.tflite"),
                              blobs["int8"]))
    if sidecar["labels"] is not None:
        files.append(atomic_write(os.path.join(out_dir, "labels.txt"),
                                  ("\n".join(labels) + "\n").encode("utf-8")))
    files.append(atomic_write(os.path.join(out_dir, f"{name}.json"),
                              json.dumps(sidecar, indent=2) + "\n"))
    return {"files": files, "signature": sidecar["signature"],
            "labels": sidecar["labels"], "normalization": norm,
            "metadata_embedded": sidecar["metadata_embedded"],
            "tflite_metadata": metadata_pack.METADATA_NAME,
            "plan": plan.to_dict(),
            "variants": {k: {f: v[f] for f in (
                "file", "bytes", "sha256", "runtime", "inputs", "outputs",
                "gpu_fallback_ops", "gpu_note")} for k, v in variants.items()}}


def _convert_int8(keras_model, representative_data, plan) -> bytes:
    from converters.conversion.app_io import convert_app_io
    return convert_app_io(keras_model, representative_data, io=plan.io,
                          input_range=plan.input_range)


def _exact_pixels(plan, info: flatbuffer.ModelInfo) -> bool | None:
    """Whether the int8 variant's quantized input is the planned pixel grid
    with an integer mean (a raw pixel then maps exactly); None when the
    input is not a quantized image."""
    if plan.input_quantization is None:
        return None
    t = info.input_details[0]
    scale, zero = plan.input_quantization
    pinned = bool(t.scale) and abs(t.scale[0] - scale) <= 1e-6 * scale \
        and t.zero_point[0] == zero
    return bool(pinned and plan.exact_pixels)
