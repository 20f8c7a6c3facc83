"""Atomic output: a file, and a whole artifact set, is all-new or all-old.

:func:`atomic_write` writes one file to a temporary file beside it and
renames it over the target. :func:`staged_dir` does the same for a folder of
artifacts (``model.tflite``, the C sources, ``report.json``, ...): the set is
written into a staging folder beside ``--out`` and switched in with one
atomic exchange of the two folders (``renameat2(RENAME_EXCHANGE)`` on Linux;
elsewhere two renames, undone by the next run if it was killed in between),
so a run killed at any moment leaves the previous set or the new one, never
a mix. :func:`prepare_out` checks the folder before any work starts and
removes what killed runs left behind.

Files get the user's umask (like ``open``), not ``mkstemp``'s 0600. A full
disk is one :class:`DiskFullError` line naming the folder.

Example:
    >>> prepare_out("build/digits", expected_bytes=2 << 20)
    >>> with staged_dir("build/digits") as stage:
    ...     atomic_write(os.path.join(stage, "model.tflite"), tflite)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Union

__all__ = ["ARTIFACT_PATTERNS", "DiskFullError", "atomic_write",
           "atomic_write_json", "prepare_out", "staged_dir"]

PathLike = Union[str, os.PathLike]  # noqa: UP007

#: what an artifact folder may hold; anything else there is the user's
ARTIFACT_PATTERNS = ("*.tflite", "report.json", "report.md", "report.html",
                     "timings.json", "*.png", "*_data.cc", "*_data.h",
                     "main.cc", "BUILD.md", "log.txt", "encodings.json",
                     "android", "arduino")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left (or quota exceeded) while writing artifacts."""

    def __str__(self) -> str:  # one line, no "[Errno 28]"
        return self.args[0] if self.args else "no space left on device"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _free(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _disk_full(path: str, what: str) -> DiskFullError:
    free = _free(os.path.dirname(os.path.abspath(path)) or ".")
    room = f", {free:,} bytes free" if free is not None else ""
    return DiskFullError(f"{path}: no space left on the device{room} while "
                         f"writing {what}; free space or choose another "
                         "output folder")


def atomic_write(path: PathLike, data: bytes | str) -> str:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-",
                               suffix=os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise _disk_full(path, f"{len(data):,} bytes") from None
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


# -- artifact sets -------------------------------------------------------------
def _names(out: str) -> tuple[str, str]:
    """(parent folder, prefix of this folder's staging/old siblings)."""
    parent, name = os.path.split(out)
    return parent, f".{name}.tfc-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out: str) -> list[tuple[str, str, int]]:
    """``(path, kind, pid)`` of staging/old siblings of ``out``."""
    parent, prefix = _names(out)
    found = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return []
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        kind, _, rest = entry[len(prefix):].partition("-")
        pid = rest.split("-")[0]
        if kind in ("stage", "old", "trash") and pid.isdigit():
            found.append((os.path.join(parent, entry), kind, int(pid)))
    return found


def _recover(out: str) -> None:
    """Undo what a killed run left: restore an old set moved aside by an
    unfinished two-rename switch, remove dead runs' staging folders."""
    stale = [(p, k) for p, k, pid in _leftovers(out) if not _pid_alive(pid)]
    if not os.path.lexists(out):
        olds = sorted((p for p, k in stale if k == "old"),
                      key=os.path.getmtime)
        if olds:
            os.rename(olds[-1], out)
            stale = [(p, k) for p, k in stale if p != olds[-1]]
    for path, _ in stale:
        shutil.rmtree(path, ignore_errors=True)


def _foreign(out: str) -> list[str]:
    return sorted(n for n in os.listdir(out) if not any(
        fnmatch.fnmatch(n, p) for p in ARTIFACT_PATTERNS))


def prepare_out(out: PathLike, expected_bytes: int = 0) -> str:
    """Check the artifact folder before any work: returns its real path.

    Cleans what killed runs left beside it, and refuses (one line naming the
    folder) a path that is a file, a folder holding files that are not
    artifacts (they would be replaced with the set), a folder that cannot be
    written, or a disk with less than ``expected_bytes`` free.
    """
    out = os.path.realpath(os.fspath(out))
    if out in (os.path.realpath(os.getcwd()), os.path.dirname(out)) or \
            os.path.realpath(os.getcwd()).startswith(out + os.sep):
        raise ValueError(f"{out}: the output folder holds the current "
                         "folder; choose a folder of its own (e.g. build/m)")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{out}: cannot create the parent folder "
                      f"({exc.strerror or exc})") from None
    _recover(out)
    if os.path.lexists(out):
        if not os.path.isdir(out):
            raise ValueError(f"{out}: exists and is not a folder; choose an "
                             "output folder")
        foreign = _foreign(out)
        if foreign:
            raise ValueError(
                f"{out}: holds {len(foreign)} file(s) that are not "
                f"artifacts (e.g. {foreign[0]!r}), which a new set would "
                "replace; choose an empty or new folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{out}: the folder {parent} is not writable; "
                              "choose another output folder")
    free = _free(parent)
    if free is not None and free < expected_bytes:
        raise DiskFullError(f"{out}: {free:,} bytes free but the artifacts "
                            f"need about {expected_bytes:,}; free space or "
                            "choose another output folder")
    return out


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False when the
    system or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
          _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, f"{b}: cannot switch in the new artifacts: "
                        f"{os.strerror(code)}")


#: use renameat2(RENAME_EXCHANGE) where the system has it (tests turn it off
#: to exercise the two-rename fallback)
USE_EXCHANGE = True


def _switch(stage: str, out: str) -> None:
    """Make ``stage`` the folder ``out`` with one atomic step."""
    if not os.path.lexists(out):
        os.rename(stage, out)
        return
    if USE_EXCHANGE and _exchange(stage, out):
        shutil.rmtree(stage, ignore_errors=True)   # the old set
        return
    parent, prefix = _names(out)
    old = tempfile.mkdtemp(dir=parent, prefix=f"{prefix}old-{os.getpid()}-")
    os.rmdir(old)
    os.rename(out, old)      # killed here: the next run restores ``old``
    os.rename(stage, out)
    trash = old.replace(f"{prefix}old-", f"{prefix}trash-", 1)
    os.rename(old, trash)    # never restored: the new set is in place
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(out: PathLike) -> Iterator[str]:
    """A staging folder beside ``out``; on success it becomes ``out``.

    Write the whole set into the yielded folder. When the block ends
    without error the set replaces ``out`` atomically (the previous set is
    kept until then); on error the staging folder is removed and ``out`` is
    untouched. A full disk is one :class:`DiskFullError` naming ``out``.
    """
    out = prepare_out(out)
    parent, prefix = _names(out)
    stage = tempfile.mkdtemp(dir=parent, prefix=f"{prefix}stage-{os.getpid()}-")
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        _switch(stage, out)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, OSError) and (exc.errno in _NO_SPACE or
                                         isinstance(exc, DiskFullError)):
            raise DiskFullError(
                f"{out}: no space left on the device while writing the "
                f"artifacts ({_free(parent) or 0:,} bytes free); nothing was "
                "replaced: free space or choose another output folder"
            ) from None
        raise
