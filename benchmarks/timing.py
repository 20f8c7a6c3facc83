"""The one timing helper of the benchmarks: epoch times of a ``fit``,
interleaved step-time comparisons of training variants, and the median
wall time of a command."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Callable, Dict

from benchmarks.common import CLI_REPEATS, ROOT


class EpochTimer:
    def __new__(cls, keras=None):
        if keras is None:   # the tf_keras generation unless told otherwise
            from tfcompress.keras2.env import keras

        class _T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times, self.cpu = [], []

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()
                self._c = time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._t)
                self.cpu.append(time.process_time() - self._c)
        return _T()


def load_average() -> float:
    """The 1-minute load average (``nan`` where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def interleaved_epochs(epochs: Dict[str, Callable[[int], float]],
                       rounds: int) -> dict:
    """Compare training variants on a shared, noisy machine.

    ``epochs[name](i)`` trains epoch ``i`` of that variant (same batches
    for all) and returns its wall seconds, or ``(wall, cpu)`` seconds (CPU:
    the process's, all threads). Round 0 is a warm-up (tracing) and
    is not timed; then ``rounds`` rounds each run every variant once, the
    order reversed every other round, so load that comes and goes hits all
    variants alike. The first variant is the baseline.

    Returns ``{name: {"seconds": median epoch, "ratio": median over rounds
    of epoch / baseline epoch of the same round, "spread": (lowest,
    highest) of those ratios, "cpu_ratio": the same median for CPU
    seconds (less sensitive to other jobs' load; ``nan`` without CPU
    times), "times": [...]}}`` and ``"load"``: the 1-minute load average
    before and after.
    """
    names = list(epochs)
    times: Dict[str, list] = {n: [] for n in names}
    cpu: Dict[str, list] = {n: [] for n in names}
    load = [load_average()]
    for r in range(rounds + 1):
        for name in (names if r % 2 == 0 else names[::-1]):
            got = epochs[name](r)
            wall, used = got if isinstance(got, tuple) else (got, None)
            if r:
                times[name].append(wall)
                cpu[name].append(used)
    load.append(load_average())
    out: dict = {"load": tuple(load)}
    for name in names:
        ratios = _paired(times[name], times[names[0]])
        cpu_ratios = _paired(cpu[name], cpu[names[0]]) \
            if None not in cpu[name] + cpu[names[0]] else [float("nan")]
        out[name] = {"seconds": statistics.median(times[name]),
                     "ratio": statistics.median(ratios),
                     "spread": (ratios[0], ratios[-1]),
                     "cpu_ratio": statistics.median(cpu_ratios),
                     "times": times[name]}
    return out


def _paired(values: list, base: list) -> list:
    return sorted(v / b for v, b in zip(values, base))


def fit_epoch(model, x, y, batch_size: int, callbacks=(), keras=None):
    """``epochs[name]`` for :func:`interleaved_epochs`: one epoch of the
    user's ``model.fit`` (no shuffling, with ``callbacks``), timed from
    the epoch's begin to its end (after the other callbacks' epoch end)."""
    timer = EpochTimer(keras)

    def run(epoch: int) -> tuple:
        model.fit(x, y, batch_size=batch_size, initial_epoch=epoch,
                  epochs=epoch + 1, shuffle=False, verbose=0,
                  callbacks=list(callbacks) + [timer])
        return timer.times[-1], timer.cpu[-1]
    return run


def median_seconds(cmd, repeats: int = CLI_REPEATS) -> float:
    """Median wall time of ``cmd`` (output discarded) over ``repeats`` runs."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, cwd=ROOT)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
