"""Standard TFLite Metadata for the Android target, per task.

The metadata (``TFLITE_METADATA``, the TFLite Metadata schema) is what
MediaPipe Tasks, the TFLite Task Library and Android Studio's ML Model
Binding read: model name, description, version, author and license; per
input its content (image with color space, audio with sample rate and
channels, text, or plain features), its normalization (a
``NormalizationOptions`` process unit) and its value range (``stats``); per
output the labels (an associated ``TENSOR_AXIS_LABELS`` file) and the score
type. The tensor metadata objects come from MediaPipe's ``metadata_info``
(pure Python in the wheel); :mod:`converters.targets.metadata_pack` packs
them into the model.

Tasks (:data:`TASKS`), detected from the tensor shapes (:func:`detect_task`)
or chosen by the caller:

=================  ==================================  =====================
task               shapes                              MediaPipe Tasks API
=================  ==================================  =====================
image_classifier   [1,H,W,1|3] -> [1,K]                ImageClassifier
image_segmenter    [1,H,W,1|3] -> [1,H',W',K]          ImageSegmenter
object_detector    [1,H,W,1|3] -> boxes, classes,      ObjectDetector
                   scores, count (4 outputs)
audio_classifier   [1,N] or [1,N,C] float, sample      AudioClassifier
                   rate given -> [1,K]
text_classifier    [1,L] int32 token ids -> [1,K]      (needs a tokenizer)
generic            anything                            LiteRT Interpreter
=================  ==================================  =====================
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from converters.tflite import flatbuffer

TASKS = ("image_classifier", "image_segmenter", "object_detector",
         "audio_classifier", "text_classifier", "generic")
#: task names of output verdicts -> the Android task (None: the detected
#: classifier kind)
TASK_ALIASES = {"classification": None, "segmentation": "image_segmenter",
                "regression": "generic"}
IMAGE_TASKS = ("image_classifier", "image_segmenter", "object_detector")
LABELS_FILE = "labels.txt"
#: ops whose output is a probability (the score type of a classifier)
_PROBABILITY_OPS = {"SOFTMAX": "probabilities (softmax)",
                    "LOGISTIC": "probabilities (sigmoid)"}


@dataclasses.dataclass
class About:
    """Model-level metadata fields (all optional strings)."""
    name: Optional[str] = None
    description: Optional[str] = None
    version: Optional[str] = None
    author: Optional[str] = None
    license: Optional[str] = None

    @classmethod
    def from_dict(cls, values: Optional[dict]) -> "About":
        values = dict(values or {})
        unknown = sorted(set(values) - {f.name for f in
                                        dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"model metadata key {unknown[0]!r} not known; "
                             "use name, description, version, author, "
                             "license")
        return cls(**{k: None if v is None else str(v)
                      for k, v in values.items()})


def is_image(t: flatbuffer.Tensor) -> bool:
    """An image tensor: ``[1, H, W, 1 or 3]``, H and W above 1."""
    shape = list(t.shape)
    return (len(shape) == 4 and shape[3] in (1, 3) and shape[1] > 1
            and shape[2] > 1)


def is_audio_shape(t: flatbuffer.Tensor) -> bool:
    """A waveform tensor: ``[1, N]`` or ``[1, N, C]`` (C <= 2), float."""
    shape = list(t.shape)
    return (t.dtype in ("FLOAT32", "INT8", "UINT8") and shape[:1] == [1]
            and (len(shape) == 2 or (len(shape) == 3 and shape[2] <= 2))
            and shape[1] > 1)


def _classes(t: flatbuffer.Tensor) -> Optional[int]:
    shape = list(t.shape)
    return shape[-1] if len(shape) == 2 and shape[0] == 1 else None


def detect_task(info: flatbuffer.ModelInfo, *,
                sample_rate: Optional[int] = None) -> str:
    """The task the model's tensor shapes say (see the module table)."""
    ins, outs = info.input_details, info.output_details
    if len(ins) != 1:
        return "generic"
    inp = ins[0]
    if is_image(inp):
        if len(outs) == 1 and _classes(outs[0]):
            return "image_classifier"
        if len(outs) == 1 and len(outs[0].shape) == 4:
            return "image_segmenter"
        if len(outs) == 4:
            return "object_detector"
        return "generic"
    if len(outs) == 1 and _classes(outs[0]):
        if inp.dtype in ("INT32", "INT64") and len(inp.shape) == 2:
            return "text_classifier"
        if sample_rate and is_audio_shape(inp):
            return "audio_classifier"
    return "generic"


def check_task(task: str, info: flatbuffer.ModelInfo, *,
               sample_rate: Optional[int] = None) -> None:
    """Raise ValueError (one line) unless ``info`` fits ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    if task == "generic":
        return
    ins, outs = info.input_details, info.output_details
    shape = list(ins[0].shape) if ins else []
    if len(ins) != 1:
        raise ValueError(f"task {task} needs one input; the model has "
                         f"{len(ins)}: use --task generic")
    if task in IMAGE_TASKS and not is_image(ins[0]):
        raise ValueError(f"task {task} needs an image input [1, H, W, 1|3]; "
                         f"input {ins[0].name!r} has shape {shape}: use "
                         "--task generic")
    if task == "audio_classifier":
        if not is_audio_shape(ins[0]):
            raise ValueError(f"task audio_classifier needs a waveform input "
                             f"[1, N] or [1, N, C]; input {ins[0].name!r} has"
                             f" shape {shape}: use --task generic")
        if not sample_rate or sample_rate <= 0:
            raise ValueError("task audio_classifier needs the sample rate "
                             "the model was trained at: pass --sample-rate "
                             "HZ")
    wanted = {"image_classifier": 1, "audio_classifier": 1,
              "text_classifier": 1, "image_segmenter": 1,
              "object_detector": 4}[task]
    if len(outs) != wanted:
        raise ValueError(f"task {task} needs {wanted} output(s); the model "
                         f"has {len(outs)}: use --task generic")
    if task.endswith("classifier") and not _classes(outs[0]):
        raise ValueError(f"task {task} needs a [1, classes] output; output "
                         f"{outs[0].name!r} has shape {list(outs[0].shape)}:"
                         " use --task generic")


def score_type(info: flatbuffer.ModelInfo, output_index: int) -> str:
    """``probabilities (softmax)``, ``probabilities (sigmoid)`` or
    ``logits``: what the op producing the output computes (through a final
    QUANTIZE/DEQUANTIZE)."""
    producers = {out: op for op in info.operators for out in op.outputs}
    op = producers.get(output_index)
    while op is not None and op.name in ("QUANTIZE", "DEQUANTIZE"):
        op = producers.get(op.inputs[0])
    return _PROBABILITY_OPS.get(op.name if op else "", "logits")


def build(info: flatbuffer.ModelInfo, task: str, *,
          names: Optional[Dict[int, str]] = None,
          labels: Optional[Sequence[str]] = None,
          normalization: Optional[dict] = None,
          sample_rate: Optional[int] = None,
          about: Optional[About] = None) -> Tuple[object, Dict[str, bytes]]:
    """The ``ModelMetadataT`` for ``info`` and the files it names.

    Args:
        info: the model (its subgraph input/output order is the metadata's).
        task: one of :data:`TASKS`.
        names: tensor index -> signature name (metadata tensor names).
        labels: class names of the (first) classification output.
        normalization: ``{"mean": [...], "std": [...]}`` of the input.
        sample_rate: audio sample rate in Hz (``audio_classifier``).
        about: model name, description, version, author, license.

    Returns:
        ``(ModelMetadataT, {file name: bytes})``.
    """
    try:
        from mediapipe.tasks.metadata import (
            metadata_schema_py_generated as mfb)
        from mediapipe.tasks.python.metadata.metadata_writers import (
            metadata_info as mi)
    except ImportError:
        raise RuntimeError(
            "writing TFLite Metadata for Android needs mediapipe==1.2.2: "
            "pip install 'tfcompress[consumers]' (make install does)") from None

    names = names or {}
    about = about or About()
    files: Dict[str, bytes] = {}
    label_md = []
    if labels is not None:
        files[LABELS_FILE] = ("\n".join(labels) + "\n").encode("utf-8")
        label_md = [mi.LabelFileMd(LABELS_FILE)]

    inputs = [_input_md(mi, mfb, t, task, names.get(t.index), normalization,
                        sample_rate) for t in info.input_details]
    outputs = _outputs_md(mi, mfb, info, task, names, label_md)
    general = mi.GeneralMd(
        name=about.name or task, version=about.version,
        description=about.description or _DESCRIPTIONS[task],
        author=about.author, licenses=about.license)
    subgraph = mfb.SubGraphMetadataT()
    subgraph.name = task
    subgraph.inputTensorMetadata = inputs
    subgraph.outputTensorMetadata = outputs
    metadata = general.create_metadata()
    metadata.subgraphMetadata = [subgraph]
    return metadata, files


_DESCRIPTIONS = {
    "image_classifier": "Identifies the most prominent object in an image "
                        "from a known set of categories.",
    "image_segmenter": "Labels every pixel of an image with a category.",
    "object_detector": "Locates and classifies objects in an image.",
    "audio_classifier": "Classifies an audio clip into a known set of "
                        "categories.",
    "text_classifier": "Classifies a text into a known set of categories.",
    "generic": "Model converted and validated by tfcompress.",
}


def _tensor_type(t: flatbuffer.Tensor) -> int:
    from mediapipe.tasks.metadata import schema_py_generated as sfb
    return getattr(sfb.TensorType, t.dtype)


def _input_md(mi, mfb, t: flatbuffer.Tensor, task: str, name: Optional[str],
              normalization: Optional[dict], sample_rate: Optional[int]):
    norm = normalization or {}
    mean, std = norm.get("mean"), norm.get("std")
    channels = t.shape[-1] if len(t.shape) >= 2 else 1
    if mean is not None and len(mean) == 1 and channels > 1 and \
            task in IMAGE_TASKS:
        mean, std = mean * channels, std * channels
    if task in IMAGE_TASKS:
        color = (mfb.ColorSpaceType.RGB if t.shape[3] == 3
                 else mfb.ColorSpaceType.GRAYSCALE)
        md = mi.InputImageTensorMd(
            name=name or "image",
            description=f"Input image, {t.shape[2]}x{t.shape[1]} "
                        f"{'RGB' if t.shape[3] == 3 else 'grayscale'}.",
            norm_mean=mean, norm_std=std, color_space_type=color,
            tensor_type=_tensor_type(t)).create_metadata()
        size = mfb.ImageSizeT()
        size.width, size.height = int(t.shape[2]), int(t.shape[1])
        md.content.contentProperties.defaultSize = size
        return md
    if task == "audio_classifier":
        md = mi.TensorMd(
            name=name or "audio_clip",
            description=f"Audio clip of {t.shape[1]} samples at "
                        f"{sample_rate} Hz.",
            content_type=mfb.ContentProperties.AudioProperties
        ).create_metadata()
        md.content.contentProperties.sampleRate = int(sample_rate)
        md.content.contentProperties.channels = int(
            t.shape[2] if len(t.shape) == 3 else 1)
        return md
    if task == "text_classifier":
        return mi.InputTextTensorMd(
            name=name or "input_text",
            description="Token ids of the input text.").create_metadata()
    md = mi.TensorMd(name=name or t.name,
                     description=f"Input {t.dtype.lower()} "
                                 f"{list(t.shape)}.").create_metadata()
    if mean is not None:
        unit = mfb.ProcessUnitT()
        unit.optionsType = mfb.ProcessUnitOptions.NormalizationOptions
        unit.options = mfb.NormalizationOptionsT()
        unit.options.mean, unit.options.std = list(mean), list(std)
        md.processUnits = [unit]
    return md


def _outputs_md(mi, mfb, info: flatbuffer.ModelInfo, task: str,
                names: Dict[int, str], label_md: list) -> List[object]:
    outs = info.output_details
    if task in ("image_classifier", "audio_classifier", "text_classifier"):
        t = outs[0]
        kind = score_type(info, t.index)
        md = mi.ClassificationTensorMd(
            name=names.get(t.index) or "score",
            description=f"Scores of the {t.shape[-1]} classes: {kind}.",
            label_files=list(label_md),
            tensor_type=_tensor_type(t)).create_metadata()
        if kind == "logits" and t.dtype == "FLOAT32":
            md.stats = mfb.StatsT()  # logits are not in [0, 1]
        return [md]
    if task == "image_segmenter":
        t = outs[0]
        return [mi.SegmentationMaskMd(
            name=names.get(t.index) or "segmentation_masks",
            description=f"Per-pixel scores of the {t.shape[-1]} classes.",
            label_files=list(label_md)).create_metadata()]
    if task == "object_detector":
        order = [("location", "Boxes [top, left, bottom, right] in [0, 1]."),
                 ("category", "Class index of each box."),
                 ("score", "Score of each box."),
                 ("number of detections", "Number of boxes.")]
        mds = []
        for (name, text), t in zip(order, outs):
            md = mi.TensorMd(name=name, description=text,
                             associated_files=list(label_md)
                             if name == "category" else None)
            mds.append(md.create_metadata())
        box = mfb.BoundingBoxPropertiesT()
        box.index, box.type = [1, 0, 3, 2], mfb.BoundingBoxType.BOUNDARIES
        box.coordinateType = mfb.CoordinateType.RATIO
        mds[0].content.contentPropertiesType = \
            mfb.ContentProperties.BoundingBoxProperties
        mds[0].content.contentProperties = box
        for md in mds[:3]:
            md.content.range = mi.ValueRangeMd(2, 2).create_metadata()
        return mds
    mds = []
    for i, t in enumerate(outs):
        files = list(label_md) if i == 0 and label_md else None
        mds.append(mi.TensorMd(
            name=names.get(t.index) or t.name,
            description=f"Output {t.dtype.lower()} {list(t.shape)}.",
            associated_files=files).create_metadata())
    return mds
