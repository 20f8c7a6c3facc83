"""Progress for long steps: tqdm bars on a terminal, plain lines elsewhere.

Calibration, LiteRT and TFLM validation over samples, arena bisection,
sensitivity sweeps and benchmarks report progress through :func:`bar`:

* stderr is a terminal: a tqdm bar (it disappears when done);
* stderr is a file or a pipe (CI logs): one line when the step starts and
  one when it ends, so logs stay short;
* :func:`set_verbosity` ``0`` (``--quiet``): nothing.

Work that runs in a child process (the sandbox, the TFLM worker) cannot draw
on the parent's terminal: there :func:`bar` appends its counts to the file
named by ``TFCOMPRESS_PROGRESS_FILE``, and the parent, inside
:func:`relay`, turns them into its own bars.

Example:
    >>> with progress.bar(len(x), "LiteRT validation", unit="sample") as p:
    ...     for row in x:
    ...         run(row); p.update()
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from typing import Dict, Iterator, Optional

__all__ = ["bar", "relay", "set_verbosity", "verbosity"]

ENV_FILE = "TFCOMPRESS_PROGRESS_FILE"
ENV_LEVEL = "TFCOMPRESS_VERBOSITY"
_MIN_TOTAL = 2          # a single step gets no bar
_FILE_INTERVAL = 0.25   # seconds between progress-file writes in a child


def set_verbosity(level: int) -> None:
    """0: quiet, 1: progress (default), 2: verbose. Children inherit it."""
    os.environ[ENV_LEVEL] = str(int(level))


def verbosity() -> int:
    try:
        return int(os.environ.get(ENV_LEVEL, "1"))
    except ValueError:
        return 1


class _Bar:
    """One step's progress; ``update(n)`` as work is done."""

    def __init__(self, total: Optional[int], desc: str, unit: str, *,
                 terminal: bool = False):
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.started = 0, time.perf_counter()
        self._tqdm = None
        self._file = None if terminal else os.environ.get(ENV_FILE)
        self._last_write = 0.0
        self._show = verbosity() > 0 and (total is None or total >= _MIN_TOTAL)
        if not self._show:
            return
        if self._file:
            self._write()
        elif sys.stderr.isatty():
            import shutil

            from tqdm import tqdm
            # a terminal that reports no size (0 columns) gets 80
            cols = shutil.get_terminal_size().columns or 80
            self._tqdm = tqdm(total=total, desc=desc, unit=unit, leave=False,
                              ncols=min(cols, 100), file=sys.stderr)
        else:
            size = f" ({total:,} {unit}s)" if total else ""
            print(f"{desc}{size} ...", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self._show:
            return
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self._file and (time.perf_counter() - self._last_write
                             >= _FILE_INTERVAL):
            self._write()

    def _write(self) -> None:
        self._last_write = time.perf_counter()
        try:
            with open(self._file, "a") as f:
                f.write(f"{os.getpid()}:{id(self)}\t{self.desc}\t{self.unit}"
                        f"\t{self.n}\t{self.total or 0}\n")
        except OSError:
            self._file = None

    def close(self) -> None:
        if not self._show:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._file:
            self._write()
        else:
            took = time.perf_counter() - self.started
            print(f"{self.desc}: {self.n:,} {self.unit}s in {took:.1f} s",
                  file=sys.stderr, flush=True)


@contextlib.contextmanager
def bar(total: Optional[int], desc: str, *, unit: str = "step"
        ) -> Iterator[_Bar]:
    """Progress of one step of ``total`` units (None: unknown)."""
    b = _Bar(total, desc, unit)
    try:
        yield b
    finally:
        b.close()


@contextlib.contextmanager
def relay() -> Iterator[Dict[str, str]]:
    """Show the progress of child processes started inside the block.

    Yields the environment entries to give the children (``os.environ`` is
    set too, so forked children inherit them). A child already writing to a
    progress file keeps it: the progress reaches the outermost parent.
    """
    if os.environ.get(ENV_FILE) or verbosity() == 0:
        yield {}
        return
    fd, path = tempfile.mkstemp(prefix="tfc-progress-", suffix=".txt")
    os.close(fd)
    os.environ[ENV_FILE] = path
    stop = threading.Event()
    bars: Dict[str, _Bar] = {}
    closed: set = set()

    def follow():
        pos = 0
        while True:
            done = stop.is_set()
            try:
                with open(path) as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except OSError:
                chunk = ""
            for line in chunk.splitlines():
                parts = line.split("\t")
                if len(parts) != 5:
                    continue
                key, desc, unit = parts[:3]
                n, total = int(parts[3]), int(parts[4])
                b = bars.get(key)
                if b is None:
                    b = bars[key] = _Bar(total or None, desc, unit,
                                         terminal=True)
                if n > b.n:
                    b.update(n - b.n)
                if total and n >= total and key not in closed:
                    closed.add(key)
                    b.close()
            if done:
                return
            stop.wait(0.2)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield {ENV_FILE: path}
    finally:
        stop.set()
        thread.join(timeout=5)
        del os.environ[ENV_FILE]
        for key, b in bars.items():
            if key not in closed:
                b.close()
        with contextlib.suppress(OSError):
            os.remove(path)
