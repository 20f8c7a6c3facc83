"""Run a function in a child process, so a native crash is one line of error.

Interpreters (LiteRT, TFLM) are C++; a malformed or hostile ``.tflite`` can
kill the process that runs them with SIGSEGV, or hang it. :func:`call` runs
``fn(*args, **kwargs)`` in a child and returns its result; an exception
raised there is raised here, and a signal death or a timeout becomes one
:class:`SandboxError` line naming the file.

Children are forked from a server process (``python -m converters.sandbox``,
started once per process, as :mod:`converters._micro_worker` does for TFLM
probes): the server imports the function's module once, then forks a fresh
child per call, so each call starts clean in ~30 ms instead of paying Python
and TensorFlow start-up. :func:`python_command` and :func:`describe_exit` are
the pieces other child-process runners (the TFLM worker) share.

Example:
    >>> from converters import litert, sandbox
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
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SandboxError", "call", "describe_exit", "python_command",
           "shutdown"]

#: extra seconds the parent waits beyond ``timeout`` before killing the server
_GRACE = 10.0


class SandboxError(RuntimeError):
    """The child process died (signal), hung (timeout) or could not start."""


def python_command(module: str, args: Sequence[object] = ()
                   ) -> tuple[list[str], dict]:
    """``(argv, env)`` to run ``python -m module args...`` as a child that
    imports this project (PYTHONPATH) and keeps TensorFlow quiet."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return [sys.executable, "-m", module, *map(str, args)], env


def describe_exit(code: int | None, message: str = "") -> str:
    """A child's end in words: ``"crashed with signal 11 (SIGSEGV)"``."""
    if code is None:
        return f"timed out ({message})" if message else "timed out"
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = "unknown signal"
        text = f"crashed with signal {-code} ({sig})"
    else:
        text = f"exited with status {code}"
    return f"{text}: {message}" if message else text


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
        with open(request, "wb") as f:
            pickle.dump([module, *preload], f)
            pickle.dump((qualname, args, kwargs), f)
        code, log = _server().run(tmp, timeout)
        if code == 0:
            with open(os.path.join(tmp, "response.pkl"), "rb") as f:
                ok, value = pickle.load(f)
            if ok:
                return value
            raise value
    if code is None or code == -signal.SIGALRM:
        raise SandboxError(f"{name}: {what} did not finish within "
                           f"{timeout:.0f} s and was stopped; the model may "
                           "be malformed or too large for this host")
    if code < 0:
        raise SandboxError(
            f"{name}: {what} {describe_exit(code, _last_line(log))}; the file "
            "is corrupt or uses what this runtime cannot run (check it with "
            "`tfcompress inspect`)")
    raise SandboxError(f"{name}: {what} failed in its child process "
                       f"({describe_exit(code, _last_line(log))})")


def _last_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()
             and not ln.startswith(("INFO:", "WARNING:", "I0000", "W0000"))]
    return lines[-1][:200] if lines else ""


class _Server:
    """The fork server, seen from the parent: one request at a time."""

    def __init__(self):
        cmd, env = python_command(__name__, ["serve"])
        self.pid = os.getpid()
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.proc.poll() is None

    def run(self, folder: str, timeout: float) -> tuple[int | None, str]:
        """Exit status of the child that ran ``folder``'s request (None:
        the server did not answer in time) and the child's output."""
        with self.lock:
            try:
                self.proc.stdin.write(f"{folder}\t{max(1, int(timeout))}\n")
                self.proc.stdin.flush()
                ready, _, _ = select.select([self.proc.stdout], [], [],
                                            timeout + _GRACE)
                answer = self.proc.stdout.readline() if ready else None
            except (BrokenPipeError, OSError):
                answer = ""
        log = _read(os.path.join(folder, "output.log"))
        if answer is None:
            self.stop()
            return None, log
        if not answer:
            self.stop()
            raise SandboxError(f"the sandbox server stopped (exit "
                               f"{self.proc.returncode}); retry")
        return int(answer), log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-20000:]
    except OSError:
        return ""


_SERVER: _Server | None = None
_SERVER_LOCK = threading.Lock()


def _server() -> _Server:
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive():
            _SERVER = _Server()
        return _SERVER


@atexit.register
def shutdown() -> None:
    """Stop this process's fork server (it also stops when we exit)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is not None and _SERVER.pid == os.getpid():
            _SERVER.stop()
        _SERVER = None


# -- the server side (python -m converters.sandbox serve) --------------------
def _child(folder: str, timeout: int) -> None:
    """In the forked child: run the request, write the response, exit."""
    log = os.open(os.path.join(folder, "output.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.alarm(timeout)
    with open(os.path.join(folder, "request.pkl"), "rb") as f:
        module = importlib.import_module(pickle.load(f)[0])
        qualname, args, kwargs = pickle.load(f)
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


def _serve() -> None:
    for line in sys.stdin:
        folder, timeout = line.rstrip("\n").split("\t")
        try:  # import in the server: every later child starts with it
            with open(os.path.join(folder, "request.pkl"), "rb") as f:
                for module in pickle.load(f):
                    importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the child reports it
            pass
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child(folder, int(timeout))
            except BaseException:  # noqa: BLE001 - exit status says it
                traceback.print_exc()
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        _serve()
    else:
        sys.exit("usage: python -m converters.sandbox serve")
