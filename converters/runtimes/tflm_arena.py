"""The smallest tensor arena a model runs with in TFLM, by bisection.

TFLM allocates every tensor of a model from one caller-given buffer, the
arena. :func:`find_arena` bisects its size (16-byte steps) with probes that
allocate and invoke once, each in its own forked child
(:class:`~converters.runtimes.childproc.ForkServer`): an undersized arena can
crash TFLM. :func:`arena_margin` is the margin recommended on top.

Example:
    >>> lo = find_arena(tflite_bytes)
    >>> lo + arena_margin(lo)
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

import subprocess
from collections.abc import Callable, Sequence

from converters import progress
from converters.runtimes import childproc
from converters.runtimes.childproc import ChildError, ForkServer
from converters.targets.micro import MicroError, _read_fb

__all__ = ["ARENA_CEILING", "ARENA_GRANULARITY", "ARENA_MARGIN",
           "arena_margin", "find_arena", "runs_with_arena", "smallest_arena"]

ARENA_GRANULARITY = 16   # bytes; TFLM aligns arena allocations to 16
ARENA_MARGIN = 0.05      # recommended = minimum + 5% (rounded down to 16 B)
_ARENA_START = 1024      # first probe when no better hint exists
ARENA_CEILING = 64 * 1024 * 1024  # no MCU has more; larger -> MicroError



# ------------------------------------------------------ child processes ---

def _worker_cmd(args: Sequence[object]):
    return childproc.python_command("converters.runtimes.tflm_worker", args)


def _call_worker(args: Sequence[object], timeout: float):
    cmd, env = _worker_cmd(args)
    env["TFCOMPRESS_CHILD_CPU"] = str(int(timeout) * (os.cpu_count() or 1))
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stderr


def _tflm_message(stderr: str) -> str:
    """The most telling line TFLM (or the worker) wrote to stderr."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    worker = [ln.split(":", 1)[1].strip() for ln in lines
              if ln.startswith("micro-worker:")]
    native = [ln for ln in lines if not ln.startswith(
        ("micro-worker:", "Traceback", "File ", "[RecordingMicroAllocator]"))]
    if native and worker:
        return f"{native[0]} ({worker[0]})"
    return (native or worker or ["no message"])[0]


def _describe_exit(code: int | None, stderr: str) -> str:
    if code is None:
        return stderr
    note = childproc.limit_note(code, stderr)
    note = f" ({note})" if note else ""
    if code < 0:
        return childproc.describe_exit(code, _tflm_message(stderr)) + note
    return _tflm_message(stderr) + note


def _num_io(tflite: bytes):
    graph = _read_fb(tflite)
    return graph.InputsLength(), graph.OutputsLength()


def _probe(path: str, arena: int, n_inputs: int, timeout: float,
           report: bool = False):
    args = ["probe", path, arena, n_inputs] + (["--report"] if report else [])
    return _call_worker(args, timeout)


def runs_with_arena(tflite: bytes, arena_size: int, *,
                    timeout: float = 60.0) -> bool:
    """Whether TFLM allocates and invokes the model once with this arena.

    Runs in a child process; a crash (SIGSEGV on a too-small arena) or a
    timeout counts as ``False``.

    Example:
        >>> runs_with_arena(tflite_bytes, 4096)
        True
    """
    n_in, _ = _num_io(tflite)
    with tempfile.TemporaryDirectory(prefix="tfc-micro-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        code, _ = _probe(path, int(arena_size), n_in, timeout)
    return code == 0


def arena_margin(arena_min: int) -> int:
    """Margin added to the measured minimum arena: 5%, rounded down to 16 B.

    At least 16 bytes; never more than 5% of the minimum once the minimum is
    above 320 bytes (every real model's is).
    """
    g = ARENA_GRANULARITY
    return max(g, int(arena_min * ARENA_MARGIN) // g * g)


@contextlib.contextmanager
def _probe_server(path: str, n_inputs: int, timeout: float):
    """A worker that imports TFLM once and forks one child per probe
    (:class:`~converters.runtimes.childproc.ForkServer`).

    Yields ``ok(arena) -> bool``. Each probe still runs in its own process
    (a crash kills only that child), without paying Python start-up and
    imports every time.
    """
    server = ForkServer("converters.runtimes.tflm_worker",
                        ["serve", path, n_inputs, max(1, int(timeout))])

    def ok(arena: int) -> bool:
        try:
            code = server.request(str(int(arena)), timeout)
        except ChildError as exc:
            raise MicroError(f"the TFLM probe server stopped while probing "
                             f"{arena} bytes ({exc})") from None
        return code == 0

    try:
        yield ok
    finally:
        server.close()


def _find_arena(path: str, n_inputs: int, timeout: float) -> int:
    g = ARENA_GRANULARITY
    code, err = _probe(path, ARENA_CEILING, n_inputs, timeout, report=True)
    if code != 0:
        raise MicroError(
            f"TFLM could not run the model even with a "
            f"{ARENA_CEILING // 2**20} MiB arena: {_describe_exit(code, err)}")
    match = re.search(r"Arena allocation total (\d+) bytes", err)
    hint = int(match.group(1)) if match else _ARENA_START
    start = max(g, -(-hint // g) * g)

    with _probe_server(path, n_inputs, timeout) as ok, \
            progress.bar(None, "TFLM arena bisection", unit="probe") as p:
        def counted(arena: int) -> bool:
            p.update()
            return ok(arena)
        return smallest_arena(counted, start)


def smallest_arena(ok: Callable[[int], bool], start: int) -> int:
    """Smallest multiple of 16 bytes where ``ok`` holds, searching from
    ``start`` (halving or doubling, then bisecting); the caller has checked
    that the 64 MiB ceiling works, and more arena never hurts."""
    g = ARENA_GRANULARITY
    if ok(start):
        hi, lo = start, start // 2 // g * g
        while lo > 0 and ok(lo):
            hi, lo = lo, lo // 2 // g * g
    else:
        lo, hi = start, min(start * 2, ARENA_CEILING)
        while hi < ARENA_CEILING and not ok(hi):
            lo, hi = hi, min(hi * 2, ARENA_CEILING)
    # invariant: lo fails (or is 0), hi works; both multiples of g
    while hi - lo > g:
        mid = (lo + hi) // 2 // g * g
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def find_arena(tflite: bytes, *, timeout: float = 60.0) -> int:
    """The smallest tensor arena (multiple of 16 bytes) TFLM runs the model with.

    Bisection over probes (allocate + one invoke on zeros), each in its own
    process: first a run with a 64 MiB arena (which also reports TFLM's own
    arena accounting, used as the starting point), then doubling to a
    working size, then bisection at 16-byte granularity; probes after the
    first are forked from a server process that has imported TFLM already.
    Assumes that more arena never hurts.

    Raises:
        MicroError: the model does not run in TFLM at all (the message is
            TFLM's), or needs more than 64 MiB.
    """
    n_in, _ = _num_io(tflite)
    with tempfile.TemporaryDirectory(prefix="tfc-micro-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        return _find_arena(path, n_in, timeout)
