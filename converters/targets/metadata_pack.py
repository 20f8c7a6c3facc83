"""Pack TFLite Metadata into a .tflite, the way the metadata populator does.

The TFLite Support ``MetadataPopulator`` (also in MediaPipe's wheel, where
it needs a compiled module the wheel lacks) does three things, done here
with the flatbuffers object API:

1. stamps ``min_parser_version`` (the oldest metadata parser that reads
   every field used, from the schema's version history) into the
   ``ModelMetadata`` flatbuffer (file identifier ``M001``);
2. stores that flatbuffer as a model buffer referred to by the
   ``Model.metadata`` entry named ``TFLITE_METADATA`` (replacing an older
   one);
3. appends the associated files (labels, vocabularies) as a zip archive
   after the flatbuffer: the .tflite is also a zip file, which MediaPipe
   Tasks and the Task Library open to find the files the metadata names.

Example:
    >>> packed = populate(tflite, metadata, {"labels.txt": b"cat\\ndog\\n"})
    >>> read(packed)["subgraph_metadata"][0]["output_tensor_metadata"]
"""

from __future__ import annotations

import io
import zipfile
from typing import Dict, List, Optional

import numpy as np

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
#: fields and enum values -> the metadata schema version that added them
_ADDED_IN = {"audio": "1.3.0", "regex_tokenizer": "1.2.1",
             "tensor_groups": "1.2.0", "subgraph_process_units": "1.1.0",
             "vocabulary": "1.0.1", "file_version": "1.4.1"}
_BASE_VERSION = "1.0.0"
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed: the same inputs give the same bytes


def min_parser_version(metadata) -> str:
    """The oldest metadata parser version that reads ``metadata`` (a
    ``ModelMetadataT``), from the fields and enum values it uses."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as mfb
    used = set()
    for graph in metadata.subgraphMetadata or []:
        if graph.inputProcessUnits or graph.outputProcessUnits:
            used.add("subgraph_process_units")
        if graph.inputTensorGroups or graph.outputTensorGroups:
            used.add("tensor_groups")
        for tensor in (graph.inputTensorMetadata or []) + \
                (graph.outputTensorMetadata or []):
            content = tensor.content
            if content is not None and content.contentPropertiesType == \
                    mfb.ContentProperties.AudioProperties:
                used.add("audio")
            for unit in tensor.processUnits or []:
                if unit.optionsType == \
                        mfb.ProcessUnitOptions.RegexTokenizerOptions:
                    used.update({"regex_tokenizer", "vocabulary"})
            for file in _files(tensor):
                if file.type == mfb.AssociatedFileType.VOCABULARY:
                    used.add("vocabulary")
                if file.version:
                    used.add("file_version")
    versions = [_BASE_VERSION] + [_ADDED_IN[k] for k in used]
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def _files(tensor) -> list:
    files = list(tensor.associatedFiles or [])
    for unit in tensor.processUnits or []:
        files += list(getattr(unit.options, "vocabFile", None) or [])
    return files


def file_names(metadata) -> List[str]:
    """Names of every associated file ``metadata`` refers to."""
    names = []
    for graph in metadata.subgraphMetadata or []:
        for tensor in (graph.inputTensorMetadata or []) + \
                (graph.outputTensorMetadata or []):
            names += [f.name.decode() if isinstance(f.name, bytes) else f.name
                      for f in _files(tensor)]
    return names


def populate(tflite: bytes, metadata, files: Dict[str, bytes]) -> bytes:
    """``tflite`` with ``metadata`` (a ``ModelMetadataT``) as its
    ``TFLITE_METADATA`` and ``files`` appended as a zip archive.

    Raises:
        ValueError: the metadata's tensor counts differ from the model's, or
            a file it names is missing from ``files`` (or the reverse).
    """
    import flatbuffers
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph, meta = model.subgraphs[0], metadata.subgraphMetadata
    if len(meta or []) != 1 or \
            len(meta[0].inputTensorMetadata or []) != len(graph.inputs) or \
            len(meta[0].outputTensorMetadata or []) != len(graph.outputs):
        raise ValueError("metadata must describe one subgraph with one entry "
                         f"per tensor: the model has {len(graph.inputs)} "
                         f"inputs and {len(graph.outputs)} outputs")
    named = set(file_names(metadata))
    if named != set(files):
        raise ValueError(f"metadata names files {sorted(named)} but "
                         f"{sorted(files)} were given")
    metadata.minParserVersion = min_parser_version(metadata)
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), METADATA_IDENTIFIER)
    _set_buffer(model, METADATA_NAME, bytes(builder.Output()))
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if not files:
        return data
    out = io.BytesIO(data)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            archive.writestr(zipfile.ZipInfo(name, _ZIP_DATE), files[name])
    return out.getvalue()


def _set_buffer(model, name: str, data: bytes) -> None:
    from tensorflow.lite.python import schema_py_generated as fb
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.metadata = list(model.metadata or [])
    for entry in model.metadata:
        if entry.name.decode("utf-8", "replace") == name:
            model.buffers[entry.buffer] = buffer
            return
    model.buffers.append(buffer)
    entry = fb.MetadataT()
    entry.name = name.encode("utf-8")
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)


def metadata_bytes(tflite: bytes) -> Optional[bytes]:
    """The ``TFLITE_METADATA`` flatbuffer of ``tflite``, or None."""
    from tensorflow.lite.python import schema_py_generated as fb
    model = fb.Model.GetRootAs(bytes(tflite), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if (entry.Name() or b"").decode("utf-8", "replace") == METADATA_NAME:
            buffer = model.Buffers(entry.Buffer())
            return bytes(buffer.DataAsNumpy().tobytes()) \
                if buffer.DataLength() else None
    return None


def read(tflite: bytes) -> Optional[dict]:
    """The ``TFLITE_METADATA`` of ``tflite`` as a plain dict (snake_case
    keys, enums by name, unset fields left out), or None."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as mfb
    data = metadata_bytes(tflite)
    if data is None:
        return None
    root = mfb.ModelMetadataT.InitFromObj(
        mfb.ModelMetadata.GetRootAs(data, 0))
    return _plain(root, mfb)


def associated_files(tflite: bytes) -> Dict[str, bytes]:
    """The files packed after the flatbuffer (empty when none)."""
    buffer = io.BytesIO(bytes(tflite))
    if not zipfile.is_zipfile(buffer):
        return {}
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


_ENUMS = {"type": "AssociatedFileType", "color_space": "ColorSpaceType",
          "options_type": "ProcessUnitOptions",
          "content_properties_type": "ContentProperties",
          "coordinate_type": "CoordinateType"}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _plain(value, mfb, key: str = ""):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v, mfb) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, int) and key in _ENUMS:
        enum = getattr(mfb, _ENUMS[key])
        return next((k for k, v in vars(enum).items()
                     if v == value and not k.startswith("_")), value)
    if hasattr(value, "__dict__"):
        out = {}
        for name, field in vars(value).items():
            snake = _snake(name)
            if field is None or (isinstance(field, list) and not field):
                continue
            out[snake] = _plain(field, mfb, snake)
        return out
    return value


def summary(tflite: bytes) -> Optional[dict]:
    """What an app developer needs from the TFLite Metadata: model fields,
    task, per input content / normalization / value range, per output
    labels (read from the packed file) and description; None without
    ``TFLITE_METADATA``."""
    full = read(tflite)
    if full is None:
        return None
    files = associated_files(tflite)
    graph = (full.get("subgraph_metadata") or [{}])[0]
    out = {k: full[k] for k in ("name", "description", "version", "author",
                                "license", "min_parser_version") if k in full}
    out["task"] = graph.get("name")
    out["inputs"] = [_tensor_summary(t, files)
                     for t in graph.get("input_tensor_metadata", [])]
    out["outputs"] = [_tensor_summary(t, files)
                      for t in graph.get("output_tensor_metadata", [])]
    out["associated_files"] = sorted(files)
    return out


def _tensor_summary(tensor: dict, files: Dict[str, bytes]) -> dict:
    content = tensor.get("content", {})
    props = content.get("content_properties", {})
    row = {"name": tensor.get("name"),
           "content": content.get("content_properties_type"),
           "description": tensor.get("description")}
    for key in ("color_space", "sample_rate", "channels"):
        if key in props:
            row[key] = props[key]
    for unit in tensor.get("process_units", []):
        if unit.get("options_type") == "NormalizationOptions":
            row["normalization"] = {k: unit["options"].get(k)
                                    for k in ("mean", "std")}
    stats = tensor.get("stats", {})
    if "min" in stats and "max" in stats:
        row["range"] = [stats["min"], stats["max"]]
    for file in tensor.get("associated_files", []):
        if file.get("type") == "TENSOR_AXIS_LABELS":
            text = files.get(file["name"], b"").decode("utf-8", "replace")
            row["labels_file"] = file["name"]
            row["labels"] = [l for l in text.splitlines() if l.strip()]
    return row
