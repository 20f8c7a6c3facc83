"""Run a function in a child process, so a native crash is one line of error.

Interpreters (LiteRT, TFLM) are C++; a malformed or hostile ``.tflite`` can
kill the process that runs them with SIGSEGV, or hang it. :func:`call` runs
``fn(*args, **kwargs)`` in a child and returns its result; an exception
raised there is raised here, and a signal death or a timeout becomes one
:class:`SandboxError` line naming the file.

Children are forked from a server process (``python -m
converters.runtimes.sandbox serve``, started once per process, on
:mod:`converters.runtimes.childproc` like the TFLM worker): the server
imports the function's module once, then forks a fresh child per call, so
each call starts clean in ~30 ms instead of paying Python and TensorFlow
start-up.

Example:
    >>> from converters.runtimes import litert, sandbox
    >>> result = sandbox.call(litert.run, tflite, x, name="model.tflite",
    ...                       what="the LiteRT interpreter")
    >>> sandbox.call(crash_me, name="bad.tflite")
    Traceback (most recent call last):
    SandboxError: bad.tflite: the interpreter crashed (signal 11, SIGSEGV) ...
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from converters import progress
from converters.runtimes.childproc import (ChildError, ForkServer,
                                           describe_exit, limit_note,
                                           python_command, serve)

__all__ = ["SandboxError", "call", "describe_exit", "python_command",
           "shutdown"]


class SandboxError(RuntimeError):
    """The child process died (signal), hung (timeout) or could not start."""


def call(fn: Callable, *args, name: str = "model",
         what: str = "the interpreter", timeout: float = 300.0,
         preload: Sequence[str] = (), **kwargs) -> Any:
    """``fn(*args, **kwargs)`` in a child process; its result or exception.

    Args:
        fn: a module-level function (sent by its import path, not pickled).
        *args, **kwargs: picklable arguments (bytes, numpy arrays, ...).
        name: the file the call works on, for the error line.
        what: what runs in the child, for the error line.
        timeout: seconds before the child is killed.
        preload: modules the server imports before forking (besides
            ``fn``'s), so that children do not import them again.

    Returns:
        What ``fn`` returned (it must be picklable).

    Raises:
        SandboxError: the child died from a signal (a native crash) or ran
            past ``timeout``.
        Exception: whatever ``fn`` raised in the child.

    Example:
        >>> call(latency.measure, tflite, name="m.tflite", runs=10)
    """
    module, qualname = fn.__module__, fn.__qualname__
    if "<" in qualname or module == "__main__":
        raise TypeError(f"sandbox.call needs a module-level function, got "
                        f"{module}.{qualname}")
    with tempfile.TemporaryDirectory(prefix="tfc-sandbox-") as tmp:
        request = os.path.join(tmp, "request.pkl")
        with progress.relay() as env:
            with open(request, "wb") as f:
                pickle.dump([module, *preload], f)
                pickle.dump((qualname, args, kwargs, env), f)
            try:
                code = _server().request(f"{tmp}\t{max(1, int(timeout))}",
                                         timeout)
            except ChildError as exc:
                raise SandboxError(f"{name}: {exc}") from None
        log = _read(os.path.join(tmp, "output.log"))
        if code == 0:
            with open(os.path.join(tmp, "response.pkl"), "rb") as f:
                ok, value = pickle.load(f)
            if ok:
                return value
            raise _with_limit(value, name, what)
    if code is None or code == -signal.SIGALRM:
        raise SandboxError(f"{name}: {what} did not finish within "
                           f"{timeout:.0f} s and was stopped; the model may "
                           "be malformed or too large for this host")
    note = limit_note(code, log)
    if note:
        raise SandboxError(f"{name}: {what} "
                           f"{describe_exit(code, _last_line(log))}; {note}")
    if code < 0:
        raise SandboxError(
            f"{name}: {what} {describe_exit(code, _last_line(log))}; the file "
            "is corrupt or uses what this runtime cannot run (check it with "
            "`tfcompress inspect`)")
    raise SandboxError(f"{name}: {what} failed in its child process "
                       f"({describe_exit(code, _last_line(log))})")


def _with_limit(exc: BaseException, name: str, what: str) -> BaseException:
    """The child's exception, saying which resource limit it hit if any."""
    text = f"{type(exc).__name__}: {exc}"
    note = limit_note(0, text)
    if not note:
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first[len("model: "):] if first.startswith("model: ") else first
    if isinstance(exc, MemoryError):
        first = f"MemoryError: {first}"
    return SandboxError(f"{name}: {what} failed: {first}; {note}")


def _last_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()
             and not ln.startswith(("INFO:", "WARNING:", "I0000", "W0000"))]
    return lines[-1][:200] if lines else ""


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-20000:]
    except OSError:
        return ""


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def _server() -> ForkServer:
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive():
            _SERVER = ForkServer(__name__, ["serve"])
        return _SERVER


@atexit.register
def shutdown() -> int | None:
    """Stop this process's fork server (it also stops when we exit).

    Returns:
        The largest resident set, in bytes, of the children it ran (None
        when there was no server, or it ran nothing).
    """
    global _SERVER
    with _SERVER_LOCK:
        peak = None
        if _SERVER is not None and _SERVER.pid == os.getpid():
            _SERVER.stop()
            peak = _SERVER.peak_rss
        _SERVER = None
        return peak


# -- the server side (python -m converters.runtimes.sandbox serve) -----------
def _child(line: str) -> None:
    """In the forked child: run the request, write the response."""
    folder = line.split("\t")[0]
    with open(os.path.join(folder, "request.pkl"), "rb") as f:
        module = importlib.import_module(pickle.load(f)[0])
        qualname, args, kwargs, env = pickle.load(f)
    os.environ.update(env)   # progress reaches the caller's terminal
    fn = module
    for part in qualname.split("."):
        fn = getattr(fn, part)
    try:
        result = (True, fn(*args, **kwargs))
        payload = pickle.dumps(result)
    except Exception as exc:  # noqa: BLE001 - sent back to the caller
        try:
            payload = pickle.dumps((False, exc))
            pickle.loads(payload)
        except Exception:  # noqa: BLE001 - unpicklable exception
            payload = pickle.dumps((False, RuntimeError(
                f"{type(exc).__name__}: {exc}")))
    with open(os.path.join(folder, "response.pkl"), "wb") as f:
        f.write(payload)


def _preload(line: str) -> None:
    """In the server: import the request's modules once, for every child."""
    try:
        with open(os.path.join(line.split("\t")[0], "request.pkl"),
                  "rb") as f:
            for module in pickle.load(f):
                importlib.import_module(module)
    except Exception:  # noqa: BLE001 - the child reports it
        pass


def _serve() -> None:
    serve(_child, timeout_of=lambda line: int(line.split("\t")[1]),
          output_of=lambda line: os.path.join(line.split("\t")[0],
                                              "output.log"),
          before_fork=_preload)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        _serve()
    else:
        sys.exit("usage: python -m converters.runtimes.sandbox serve")
