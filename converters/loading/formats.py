"""What a model file is, read from its bytes, never from its name.

A ``.h5`` renamed ``.keras`` is still HDF5, a zip named ``model.h5`` is still
a Keras archive; loaders pick their code path by :func:`detect`, so a file
cannot steer the toolkit into a loader that skips the code scan
(:mod:`converters.loading.codescan`).

Example:
    >>> detect("model.keras")
    'keras_zip'
    >>> detect("notes.txt")
    Traceback (most recent call last):
    UnknownFormatError: notes.txt: unknown model format (...)
"""

from __future__ import annotations

import os

__all__ = ["FORMATS", "HDF5", "KERAS_ZIP", "SAVED_MODEL",
           "UnknownFormatError", "detect"]

KERAS_ZIP = "keras_zip"      #: a zip archive (Keras v3 format, either Keras)
HDF5 = "hdf5"                #: the legacy Keras HDF5 format (.h5)
SAVED_MODEL = "saved_model"  #: a TensorFlow SavedModel directory
FORMATS = (KERAS_ZIP, HDF5, SAVED_MODEL)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: local file header, end of central directory (empty zip), spanned archive
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class UnknownFormatError(ValueError):
    """The path is not a Keras zip, an HDF5 file or a SavedModel folder."""


def _hint(path: str) -> str:
    return (f"{path}: unknown model format ({{}}); pass a Keras .keras zip, "
            "an .h5 (HDF5) file or a SavedModel directory")


def detect(path: str | os.PathLike) -> str:
    """The format of ``path`` from its content: one of :data:`FORMATS`.

    Raises:
        FileNotFoundError: nothing at ``path``.
        UnknownFormatError: anything else (one line naming the path).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, n))
               for n in _SAVED_MODEL_FILES):
            return SAVED_MODEL
        raise UnknownFormatError(_hint(path).format(
            "a directory without saved_model.pb"))
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head[:4] in _ZIP_MAGICS:
                return KERAS_ZIP
            if head == _HDF5_MAGIC or _hdf5_user_block(f):
                return HDF5
    except OSError as exc:
        raise UnknownFormatError(_hint(path).format(
            f"cannot read it: {exc.strerror or exc}")) from None
    if head[4:8] == b"TFL3":
        what = ("a .tflite flatbuffer, already converted: check it with "
                "`tfcompress validate` or `inspect`")
    else:
        what = "an empty file" if not head else f"starts with {head[:8]!r}"
    raise UnknownFormatError(_hint(path).format(what))


def _hdf5_user_block(f) -> bool:
    """HDF5 allows a user block: the signature may sit at 512, 1024, ..."""
    offset = 512
    size = os.fstat(f.fileno()).st_size
    while offset + 8 <= size and offset <= 1 << 24:
        f.seek(offset)
        if f.read(8) == _HDF5_MAGIC:
            return True
        offset *= 2
    return False
