"""The one child-process runner: a fork server and its children.

Interpreters (LiteRT, TFLM) are C++: a malformed ``.tflite`` or an undersized
TFLM arena can kill the process that runs them (SIGSEGV) or hang it. Every
run on a user's file therefore happens in a child. Starting Python and
TensorFlow per run is slow, so a *fork server* (``python -m MODULE serve``)
imports what the runs need once, then forks a fresh child per request; a
crash or a hang ends only that child.

Both sides live here: :class:`ForkServer` (the parent's handle: one request
line in, the child's exit status out, with a time limit) and :func:`serve`
(the server loop, given a handler that runs one request in the child).
:mod:`converters.runtimes.sandbox` (any function on a user's file) and
:mod:`converters.runtimes.tflm_worker` (TFLM arena probes) are its users.

Example:
    >>> server = ForkServer("converters.runtimes.sandbox", ["serve"])
    >>> server.request("/tmp/job\\t60", timeout=60)    # child's exit status
    0
"""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

__all__ = ["ChildError", "ForkServer", "describe_exit", "limit_note",
           "limit_resources", "memory_cap", "python_command", "serve"]

#: extra seconds the parent waits beyond ``timeout`` before killing the server
GRACE = 10.0


class ChildError(RuntimeError):
    """The fork server stopped or could not start."""


#: environment variable: extra address space a child may take ("4G", "512M")
MEMORY_ENV = "TFCOMPRESS_CHILD_MEMORY"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_cap() -> int:
    """Bytes of address space a child may add to what it starts with:
    ``$TFCOMPRESS_CHILD_MEMORY`` (``"4G"``, ``"512M"``, bytes), else half
    the machine's memory, at most 4 GiB."""
    text = os.environ.get(MEMORY_ENV, "").strip().upper().rstrip("B")
    if text:
        try:
            unit = _UNITS.get(text[-1], 1)
            return int(float(text.rstrip("KMGT")) * unit)
        except ValueError:
            raise ValueError(f"{MEMORY_ENV}={os.environ[MEMORY_ENV]!r}: "
                             "expected a size such as 4G or 512M") from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return min(4 << 30, total // 2)


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def limit_resources(cpu_seconds: float | None = None) -> None:
    """In a child that touches a user's file: cap its address space at what
    it has now plus :func:`memory_cap` (``RLIMIT_AS``: an allocation past it
    fails) and its CPU time at ``cpu_seconds`` (``RLIMIT_CPU``: SIGXCPU)."""
    limit = _address_space() + memory_cap()
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds:
        soft = max(1, int(cpu_seconds))
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))


_MEMORY_WORDS = ("memoryerror", "bad_alloc", "cannot allocate memory",
                 "failed to allocate", "out of memory", "unable to allocate",
                 "failed to reshape", "failed to prepare")


def limit_note(code: int | None, text: str = "") -> str:
    """What limit a failed child probably hit, as a clause for its error
    line (``""``: none that the exit or the message tells)."""
    if code in (-signal.SIGXCPU,):
        return "it used up its CPU-time limit"
    lowered = text.lower()
    if any(word in lowered for word in _MEMORY_WORDS):
        return (f"the child's memory is capped at {memory_cap() / 2**30:.1f}"
                f" GiB beyond its start ({MEMORY_ENV} raises it)")
    return ""


def python_command(module: str, args: Sequence[object] = ()
                   ) -> tuple[list[str], dict]:
    """``(argv, env)`` to run ``python -m module args...`` as a child that
    imports this project (PYTHONPATH) and keeps TensorFlow quiet."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
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


class ForkServer:
    """The parent's handle on a fork server: one request at a time.

    Args:
        module: the module run as ``python -m module *args``; its server
            loop is :func:`serve`.
        args: its command line.
    """

    def __init__(self, module: str, args: Sequence[object] = ()):
        cmd, env = python_command(module, args)
        self.pid = os.getpid()
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lock = threading.Lock()
        #: the largest resident set, in bytes, of the children the server
        #: forked for requests (None before the first), each counted from
        #: its fork. The server's own peak is not used: exec'd from this
        #: process, it inherits our high-water mark
        self.peak_rss: int | None = None

    def alive(self) -> bool:
        """Started by this process and still running."""
        return self.pid == os.getpid() and self.proc.poll() is None

    def request(self, line: str, timeout: float) -> int | None:
        """Send one request line; the exit status of the child that ran it
        (``-N``: killed by signal N), or None when the server did not
        answer within ``timeout`` (it is then stopped).

        Raises:
            ChildError: the server had stopped.
        """
        with self.lock:
            try:
                self.proc.stdin.write(line.rstrip("\n") + "\n")
                self.proc.stdin.flush()
                ready, _, _ = select.select([self.proc.stdout], [], [],
                                            timeout + GRACE)
                answer = self.proc.stdout.readline() if ready else None
            except (BrokenPipeError, OSError):
                answer = ""
        if answer is None:
            self.stop()
            return None
        if not answer:
            self.stop()
            raise ChildError(f"the child-process server stopped (exit "
                             f"{self.proc.returncode}); retry")
        code, *rss = answer.split()
        if rss:
            self.peak_rss = max(self.peak_rss or 0, int(rss[0]) << 10)
        return int(code)

    def stop(self) -> None:
        """Kill the server (its running child dies with its pipe)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self, wait: float = 10.0) -> None:
        """End the server politely (end of input), kill it after ``wait``."""
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.stop()


def serve(handle: Callable[[str], None], *, timeout_of: Callable[[str], int],
          output_of: Callable[[str], str | None] = lambda line: None,
          before_fork: Callable[[str], None] = lambda line: None) -> None:
    """The server loop: per stdin line, fork a child that runs ``handle``.

    In the child, stdout and stderr go to ``output_of(line)`` (a file path;
    None: discarded), SIGALRM fires after ``timeout_of(line)`` seconds, and
    the exit status is 0 when ``handle`` returned, 3 when it raised (the
    traceback goes to the output). The server answers each line with the
    child's exit status and its peak resident set (KiB), one line each.
    """
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        before_fork(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                out = output_of(line)
                fd = os.open(out or os.devnull,
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                seconds = max(1, int(timeout_of(line)))
                signal.alarm(seconds)
                limit_resources(seconds * max(1, os.cpu_count() or 1))
                handle(line)
            except BaseException:  # noqa: BLE001 - exit status says it
                traceback.print_exc()
                code = 3
            os._exit(code)
        _, status, usage = os.wait4(pid, 0)
        print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, flush=True)
