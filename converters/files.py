"""Atomic file output: an artifact is complete or absent, never half-written.

Each file is written to a temporary file in the same directory and renamed
over the target (``os.replace`` is atomic on POSIX), so a run killed
mid-write leaves the previous artifact intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Union

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, data: Union[bytes, str]) -> str:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-",
                               suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: PathLike, obj) -> str:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False,
                                         default=_jsonable) + "\n")


def _jsonable(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
