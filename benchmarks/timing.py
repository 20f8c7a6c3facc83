"""The one timing helper of the benchmarks: epoch times of a ``fit`` and
the median wall time of a command."""

from __future__ import annotations

import statistics
import subprocess
import time

from benchmarks.common import CLI_REPEATS, ROOT


class EpochTimer:
    def __new__(cls, keras=None):
        if keras is None:   # the tf_keras generation unless told otherwise
            from tfcompress.keras2.env import keras

        class _T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._t)
        return _T()




def median_seconds(cmd, repeats: int = CLI_REPEATS) -> float:
    """Median wall time of ``cmd`` (output discarded) over ``repeats`` runs."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, cwd=ROOT)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
