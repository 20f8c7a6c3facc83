"""What the Android artifact will be, decided and checked before converting.

:func:`plan` reads the Keras model's input/output shapes and the options
(labels, normalization, I/O type, task, sample rate, model metadata) and
returns an :class:`AndroidPlan`, or raises ValueError with one line naming
the culprit, before anything is converted or written.

I/O types (``io``): ``uint8`` (default for image tasks: MediaPipe Tasks and
the Task Library feed camera pixels as they are), ``float32`` (default for
everything else) or ``int8``. For a quantized image input the input
quantization is pinned to the pixel grid (see
:mod:`converters.conversion.app_io`): with normalization ``(mean, std)``
the uint8 input tensor gets ``scale = 1 / std``, ``zero_point = mean``.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from converters.conversion.app_io import IO_TYPES, input_quantization
from converters.conversion.signature import input_names, output_names
from converters.targets import android_metadata as meta

Number = Union[float, Sequence[float]]

#: data below this maximum is normalized, not raw pixels 0..255
_PIXEL_MAX_FLOOR = 1.5


# -- the user's options -------------------------------------------------
def normalization_spec(normalization: dict | None) -> dict | None:
    """Check ``normalization`` and give both of its forms.

    Accepts ``{"mean": m, "std": s}`` (``x = (raw - mean) / std``) or
    ``{"scale": a, "offset": b}`` (``x = raw * scale + offset``); each value
    a number or one number per channel (the last input axis).

    Returns:
        ``{"mean", "std", "scale", "offset", "formula"}`` as lists, or None.
    """
    if normalization is None:
        return None
    keys = set(normalization)
    if keys == {"mean", "std"}:
        mean, std = _pair(normalization, "mean", "std", nonzero="std")
        scale = [1.0 / s for s in std]
        offset = [-m / s for m, s in zip(mean, std)]
    elif keys == {"scale", "offset"}:
        scale, offset = _pair(normalization, "scale", "offset",
                              nonzero="scale")
        std = [1.0 / s for s in scale]
        mean = [-o / s for o, s in zip(offset, scale)]
    else:
        raise ValueError(
            f"normalization keys {sorted(keys)} not understood: pass "
            "{'mean': m, 'std': s} or {'scale': a, 'offset': b}")
    return {"mean": mean, "std": std, "scale": scale, "offset": offset,
            "formula": "x = (raw - mean) / std = raw * scale + offset"}


def _pair(normalization: dict, first: str, second: str, *,
          nonzero: str) -> tuple:
    """The ``first`` and ``second`` value lists broadcast to one length;
    ``nonzero`` (the std or the scale) must have no zero."""
    values = {first: _floats(normalization[first], first),
              second: _floats(normalization[second], second)}
    if any(v == 0 for v in values[nonzero]):
        raise ValueError(f"normalization {nonzero} {values[nonzero]} has a "
                         f"zero: pass non-zero per-channel {nonzero} values")
    a, b = values[first], values[second]
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(f"normalization {first} has {len(a)} values and "
                         f"{second} {len(b)}; pass one or one per channel")
    n = max(len(a), len(b))
    return a * (n // len(a)), b * (n // len(b))


def _floats(value: Number, what: str) -> list[float]:
    array = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if array.ndim != 1 or not array.size or not np.all(np.isfinite(array)):
        raise ValueError(f"normalization {what} must be a finite number or a "
                         f"list of them, got {value!r}")
    return [float(v) for v in array]


def _labels(labels: Sequence[str] | None, model) -> list | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not all(isinstance(l, str) for l in labels):
        raise ValueError("labels must be a list of strings, one per class")
    labels = list(labels)
    bad = [l for l in labels if not l.strip() or "\n" in l or "\r" in l]
    if bad:
        raise ValueError(f"label {bad[0]!r} is empty or spans lines; labels "
                         "go one a line into labels.txt")
    if len(model.outputs) == 1:
        shape = tuple(model.outputs[0].shape)
        classes = int(shape[-1]) if shape and shape[-1] is not None else None
        if classes is not None and len(labels) != classes:
            raise ValueError(
                f"{len(labels)} labels for output "
                f"{output_names(model)[0]!r} "
                f"with {classes} classes; pass one label per class")
    return labels


@dataclasses.dataclass
class TensorSpec:
    """Name, shape (batch 1) and TFLite dtype name of a Keras tensor."""
    name: str
    shape: List[int]
    dtype: str
    index: int = -1


@dataclasses.dataclass
class AndroidPlan:
    """The decisions :func:`plan` made (all checked)."""
    task: str
    io: str
    labels: Optional[List[str]]
    normalization: Optional[dict]
    sample_rate: Optional[int]
    about: meta.About
    input_range: Optional[Tuple[float, float]] = None
    input_quantization: Optional[Tuple[float, int]] = None
    exact_pixels: Optional[bool] = None
    note: Optional[str] = None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["about"] = {k: v for k, v in out["about"].items() if v}
        return out


def keras_specs(model) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    """The model's inputs and outputs as :class:`TensorSpec` (batch 1)."""
    def spec(tensor, name):
        shape = [1] + [int(d) if d is not None else -1
                       for d in tuple(tensor.shape)[1:]]
        dtype = np.dtype(getattr(tensor.dtype, "name", tensor.dtype)).name
        return TensorSpec(name, shape, dtype.upper())
    return ([spec(t, n) for t, n in zip(model.inputs, input_names(model))],
            [spec(t, n) for t, n in zip(model.outputs, output_names(model))])


class _Shapes:
    """A :class:`flatbuffer.ModelInfo` look-alike for task detection."""

    def __init__(self, inputs, outputs):
        self.input_details, self.output_details = inputs, outputs
        self.operators: list = []


def plan(keras_model, x: np.ndarray, *, labels: Optional[Sequence[str]] = None,
         normalization: Optional[dict] = None, io: Optional[str] = None,
         task: Optional[str] = None, sample_rate: Optional[int] = None,
         about: Optional[dict] = None) -> AndroidPlan:
    """Decide task, I/O type and input quantization; check every option.

    Args:
        keras_model: the Keras model to convert.
        x: representative model inputs (already normalized).
        labels: class names, one per class of the classification output.
        normalization: ``{"mean", "std"}`` or ``{"scale", "offset"}`` the app
            applies to raw input.
        io: ``uint8``, ``int8`` or ``float32`` (default per task).
        task: one of :data:`android_metadata.TASKS` (default: detected).
        sample_rate: audio sample rate in Hz (audio classifiers).
        about: model ``name``, ``description``, ``version``, ``author``,
            ``license``.

    Raises:
        ValueError: an option does not fit the model (one line).
    """
    norm = normalization_spec(normalization)
    labels = _labels(labels, keras_model)
    about_md = meta.About.from_dict(about)
    ins, outs = keras_specs(keras_model)
    shapes = _Shapes(ins, outs)
    if sample_rate is not None and int(sample_rate) <= 0:
        raise ValueError(f"sample rate {sample_rate} must be a positive "
                         "number of Hz")
    note = None
    if task in meta.TASK_ALIASES:
        alias, task = task, meta.TASK_ALIASES[task]
        if task is None:
            task = meta.detect_task(shapes, sample_rate=sample_rate)
            if not task.endswith("classifier"):
                raise ValueError(
                    f"task {alias}: the model's shapes fit no classifier "
                    f"({'audio needs --sample-rate; ' if not sample_rate else ''}"
                    "pass --task image_classifier, audio_classifier or "
                    "text_classifier)")
    if task is None:
        task = meta.detect_task(shapes, sample_rate=sample_rate)
        if task in meta.IMAGE_TASKS and norm is None and \
                not _raw_pixels(x):
            note = (f"{task} needs the normalization that maps pixels to the "
                    "model input (--normalization MEAN,STD); written as a "
                    "generic model")
            task = "generic"
    meta.check_task(task, shapes, sample_rate=sample_rate)
    image = len(ins) == 1 and meta.is_image(ins[0])
    if io is None:
        io = "uint8" if task in meta.IMAGE_TASKS else "float32"
    if io not in IO_TYPES:
        raise ValueError(f"unknown --io {io!r}; valid: {list(IO_TYPES)}")
    if io == "uint8" and not image:
        first = ins[0] if ins else None
        raise ValueError(
            "--io uint8 needs an image input [1, H, W, 1|3]; input "
            f"{first.name if first else '?'!r} has shape "
            f"{first.shape if first else []}: use --io float32 or int8")
    result = AndroidPlan(task=task, io=io, labels=labels, normalization=norm,
                         sample_rate=int(sample_rate) if sample_rate else None,
                         about=about_md, note=note)
    if task in meta.IMAGE_TASKS and norm is None:
        result.normalization = norm = _identity_if_pixels(x, ins[0])
    if image and io in ("uint8", "int8") and norm is not None:
        mean, std = _uniform(norm, ins[0])
        low, high = sorted(((0.0 - mean) / std, (255.0 - mean) / std))
        _check_pixel_range(x, ins[0], mean, std, low, high)
        result.input_range = (low, high)
        result.input_quantization = input_quantization((low, high), io)
        result.exact_pixels = float(mean).is_integer() and std > 0
    return result


def _identity_if_pixels(x: np.ndarray, inp: TensorSpec) -> dict:
    """Normalization ``(0, 1)`` when ``x`` holds raw pixels; else raise."""
    if not _raw_pixels(x):
        data = np.asarray(x, np.float32)
        low, high = (float(data.min()), float(data.max())) if data.size \
            else (0.0, 0.0)
        raise ValueError(
            f"image input {inp.name!r} takes values in [{low:.3g}, "
            f"{high:.3g}] (data x), not raw pixels 0..255: pass "
            "--normalization MEAN,STD that maps pixels to them (e.g. 0,255 "
            "for pixel / 255, 127.5,127.5 for [-1, 1])")
    return normalization_spec({"mean": 0.0, "std": 1.0})


def _check_pixel_range(x: np.ndarray, inp: TensorSpec, mean: float,
                       std: float, low: float, high: float) -> None:
    """Normalized pixels never leave ``[low, high]``: data that do (by more
    than one input step) were normalized otherwise."""
    data = np.asarray(x, np.float32)
    step = (high - low) / 255.0
    if data.size and (float(data.min()) < low - step
                      or float(data.max()) > high + step):
        raise ValueError(
            f"data x for input {inp.name!r} spans [{float(data.min()):.3g}, "
            f"{float(data.max()):.3g}] but normalization mean {mean:g} std "
            f"{std:g} maps pixels 0..255 to [{low:.3g}, {high:.3g}]: pass "
            "the normalization the model was trained with, or --io float32")


def _raw_pixels(x: np.ndarray) -> bool:
    """Whether ``x`` looks like raw pixels (0..255, not normalized)."""
    data = np.asarray(x, np.float32)
    return bool(data.size) and float(data.max()) >= _PIXEL_MAX_FLOOR and \
        float(data.min()) >= -0.5


def _uniform(norm: dict, inp: TensorSpec) -> Tuple[float, float]:
    """The one (mean, std) of every channel; raise when they differ."""
    mean, std = set(norm["mean"]), set(norm["std"])
    if len(mean) > 1 or len(std) > 1:
        raise ValueError(
            f"per-channel normalization mean {norm['mean']} std "
            f"{norm['std']} of input {inp.name!r} cannot be folded into one "
            "quantized input scale: use --io float32 (the app then "
            "normalizes with the metadata's NormalizationOptions)")
    return mean.pop(), std.pop()
