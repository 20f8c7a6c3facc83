"""Low-rank factorization: replace a ``Dense`` (or 1x1 ``Conv2D``) kernel
``W`` (``in x out``) by two thinner layers, ``W ~= A @ B`` with ``A``
(``in x r``) and ``B`` (``r x out``) from a truncated SVD
(``A = U_r sqrt(S_r)``, ``B = sqrt(S_r) V_r^T``).

``Dense(out)`` becomes ``Dense(r, use_bias=False, name=<name>_lowrank)``
then ``Dense(out)`` under the original name (bias and activation stay on the
second layer); a 1x1 ``Conv2D`` becomes two 1x1 ``Conv2D`` layers (the
stride moves to the first). The rank is given (``rank=``), or is the
smallest that keeps a fraction of the spectrum's energy
(``energy=``: smallest ``r`` with ``sum(s[:r]**2) >= energy * sum(s**2)``).
A layer is factorized only where it saves parameters
(``r * (in + out) < in * out``), unless ``only_if_smaller=False``.

Fine-tune the result with your own ``fit``.

Example:
    >>> small, report = factorize(model, energy=0.9)
    >>> print(report)           # per layer rank, energy kept, params
    >>> small.compile(...); small.fit(x, y, epochs=2)
"""

from __future__ import annotations

import copy
import dataclasses
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tfcompress.keras2.env import keras
from tfcompress.keras2.selection import (SKIP_NO_SUPPORT, SKIP_USER, CompressionReport,
                                  check_functional, matches)

TECHNIQUE = "low_rank"
SKIP_NO_SAVING = "factorization saves no parameters at this rank"
SKIP_SHARED = "shared layer or call with extra tensor arguments"
SUFFIX = "_lowrank"


def choose_rank(singular_values: np.ndarray, energy: float) -> int:
    """Smallest ``r`` with ``sum(s[:r]**2) >= energy * sum(s**2)``.

    Example:
        >>> choose_rank(np.array([3.0, 1.0, 0.1]), 0.9)
        1
    """
    if not 0.0 < float(energy) <= 1.0:
        raise ValueError(f"energy should be in (0, 1], got {energy!r}")
    s2 = np.square(np.asarray(singular_values, np.float64))
    cum = np.cumsum(s2)
    if cum[-1] == 0.0:
        return 1
    return int(np.argmax(cum >= energy * cum[-1] * (1.0 - 1e-12))) + 1


def split_kernel(kernel: np.ndarray, rank: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` with ``A @ B`` the best rank-``rank`` approximation of the
    2-D ``kernel`` (``in x out``); the singular values split evenly."""
    u, s, vt = np.linalg.svd(np.asarray(kernel, np.float64),
                             full_matrices=False)
    root = np.sqrt(s[:rank])
    return ((u[:, :rank] * root).astype(np.float32),
            (root[:, None] * vt[:rank]).astype(np.float32))


def _kind(layer) -> Optional[str]:
    cls = type(layer)
    if cls is keras.layers.Dense:
        return "dense"
    if cls is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1) \
            and layer.groups == 1:
        return "conv1x1"
    return None


@dataclasses.dataclass
class LowRankReport:
    """Per factorized/skipped layer: shape, rank, energy kept, params; and
    the model's params (and accuracy with ``eval_data``) before/after."""

    layers: List[dict]
    params_before: int
    params_after: int
    accuracy_before: Optional[float] = None
    accuracy_after: Optional[float] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        rows = [f"low-rank: params {self.params_before:,} -> "
                f"{self.params_after:,}" + (
                    f", accuracy {self.accuracy_before:.4f} -> "
                    f"{self.accuracy_after:.4f}"
                    if self.accuracy_before is not None else "")]
        for e in self.layers:
            tail = f" ({e['reason']})" if e["reason"] else ""
            rows.append(f"  {e['name']:24s} {e['in']}x{e['out']} rank "
                        f"{e['rank']} energy {e['energy']:.4f} params "
                        f"{e['params_before']:,} -> {e['params_after']:,} "
                        f"{e['status']}{tail}")
        return "\n".join(rows)


def _accuracy(model, data) -> float:
    x, y = data
    pred = model.predict(x, verbose=0)
    return float(np.mean(np.argmax(pred, -1) == np.asarray(y).reshape(-1)))


def _unique(name: str, taken: set) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    return out


def _first_config(entry: dict, kind: str, name: str, rank: int) -> dict:
    first = copy.deepcopy(entry)
    if "name" in first:  # Functional configs name each entry too
        first["name"] = name
    c = first["config"]
    c["name"] = name
    c["use_bias"] = False
    c["activation"] = "linear"
    for key in ("bias_initializer", "bias_regularizer", "bias_constraint",
                "activity_regularizer"):
        c.pop(key, None)
    c["units" if kind == "dense" else "filters"] = rank
    return first


def factorize(model, rank: Optional[int] = None, energy: Optional[float] = None,
              *, layers: Optional[Sequence] = None,
              skip: Optional[Sequence] = None, only_if_smaller: bool = True,
              eval_data=None, report: Optional[CompressionReport] = None,
              custom_objects: Optional[dict] = None):
    """Factorize the ``Dense`` and 1x1 ``Conv2D`` layers of ``model``.

    Args:
        model: a built Sequential or Functional ``tfcompress.keras`` model.
        rank: keep this many singular values (capped at ``min(in, out)``).
        energy: or: keep the smallest rank holding this fraction of
            ``sum(s**2)``, in ``(0, 1]``. Give exactly one of the two.
        layers: layer selectors to consider (default: every Dense and 1x1
            Conv2D).
        skip: layer selectors to leave alone.
        only_if_smaller: factorize only where it saves parameters.
        eval_data: ``(x, y)`` to report classification accuracy before and
            after (before any fine-tuning).
        report: a :class:`CompressionReport` to add per-layer entries to.
        custom_objects: custom layers needed to rebuild the model.

    Returns:
        ``(new_model, LowRankReport)``; the model is not compiled.

    Example:
        >>> small, rep = factorize(model, energy=0.95, skip=["logits"])
    """
    check_functional(model, "factorize")
    if (rank is None) == (energy is None):
        raise ValueError("factorize needs exactly one of rank= (an int) or "
                         f"energy= (a fraction); got rank={rank!r}, "
                         f"energy={energy!r}")
    if rank is not None and int(rank) < 1:
        raise ValueError(f"rank should be >= 1, got {rank!r}")
    log = report if report is not None else CompressionReport()
    config = model.get_config()
    sequential = isinstance(model, keras.Sequential)
    taken = {lc["config"]["name"] for lc in config["layers"]}
    new_layers, weights, entries = [], {}, []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        layer = None if entry["class_name"] == "InputLayer" \
            else model.get_layer(name)
        kind = _kind(layer) if layer is not None else None
        if kind is None or (layers is not None and not matches(layer, layers)):
            if layer is not None and layer.weights and layers is None:
                log.add(layer, TECHNIQUE, "skipped", SKIP_NO_SUPPORT)
            new_layers.append(entry)
            continue
        kernel = layer.kernel.numpy()
        w2d = kernel.reshape(kernel.shape[-2], kernel.shape[-1])
        n_in, n_out = w2d.shape
        s = np.linalg.svd(w2d.astype(np.float64), compute_uv=False)
        r = min(int(rank), len(s)) if rank is not None else choose_rank(s, energy)
        bias = n_out if layer.use_bias else 0
        before, after = n_in * n_out + bias, r * (n_in + n_out) + bias
        kept = float(np.sum(s[:r] ** 2) / max(np.sum(s ** 2), 1e-30))
        record = {"name": name, "type": type(layer).__name__, "in": n_in,
                  "out": n_out, "rank": r, "energy": kept,
                  "params_before": before, "params_after": before,
                  "status": "skipped", "reason": ""}
        nodes = entry.get("inbound_nodes") or []
        reason = ""
        if matches(layer, skip):
            reason = SKIP_USER
        elif only_if_smaller and after >= before:
            reason = SKIP_NO_SAVING
        elif not sequential and (len(nodes) != 1 or len(nodes[0]) != 1):
            reason = SKIP_SHARED
        if reason:
            record["reason"] = reason
            entries.append(record)
            log.add(layer, TECHNIQUE, "skipped", reason)
            new_layers.append(entry)
            continue
        first_name = _unique(name + SUFFIX, taken)
        taken.add(first_name)
        first = _first_config(entry, kind, first_name, r)
        second = copy.deepcopy(entry)
        if kind == "conv1x1":
            second["config"]["strides"] = [1, 1]
        if not sequential:
            second["inbound_nodes"] = [[[first_name, 0, 0, {}]]]
        new_layers += [first, second]
        a, b = split_kernel(w2d, r)
        shape_a = (a.shape if kind == "dense" else (1, 1) + a.shape)
        shape_b = (b.shape if kind == "dense" else (1, 1) + b.shape)
        weights[first_name] = [a.reshape(shape_a)]
        weights[name] = [b.reshape(shape_b)] + layer.get_weights()[1:]
        record.update(params_after=after, status="compressed")
        entries.append(record)
        log.add(layer, TECHNIQUE, "compressed")
    config["layers"] = new_layers
    cls = keras.Sequential if sequential else keras.Model
    new = cls.from_config(config, custom_objects=custom_objects)
    for layer in new.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
        else:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    out = LowRankReport(entries, int(model.count_params()),
                        int(new.count_params()))
    if eval_data is not None:
        out.accuracy_before = _accuracy(model, eval_data)
        out.accuracy_after = _accuracy(new, eval_data)
    return new, out
