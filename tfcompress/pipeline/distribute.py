"""``tf.distribute`` strategies by name, and who writes files in a cluster.

``compress(..., strategy=...)`` builds the wrappers and compiles under the
strategy's scope; pruning, clustering, QAT and the collaborative schemes then
train with mirrored variables. One thing does not stay in sync by itself:
tfmot's input ``QuantizeLayer`` tracks the min/max of all values it saw, and
each replica only sees its share of the batch; :class:`SyncQuantizeRanges`
(added by ``callbacks_for`` to QAT models) makes them the min/max over all
replicas at every epoch end, as on a single device. In a multi-worker
cluster every worker runs the same command; only the chief writes
artifacts, checkpoints and logs.

Example:
    >>> strategy = get_strategy("mirrored")        # all local GPUs (or CPU)
    >>> result = tfcompress.compress(model, (x, y), None, "pcqat",
    ...                              strategy=strategy)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator, List, Optional, Tuple, Union

from tfcompress.keras2.env import keras, tf, tfmot

#: names ``get_strategy`` (and ``tfcompress optimize --strategy``) accepts.
STRATEGIES = ("none", "mirrored", "multiworker")


def get_strategy(identifier: Union[str, None, object] = "none"):
    """A strategy from a name, or ``identifier`` itself if it is one.

    ``"none"`` (or ``None``) gives ``None``: train on the default device.
    ``"mirrored"`` gives ``MirroredStrategy`` over the local devices.
    ``"multiworker"`` gives ``MultiWorkerMirroredStrategy`` configured from
    the ``TF_CONFIG`` environment variable; create it before any other
    TensorFlow work in the process (TensorFlow requires that).

    Example:
        >>> strategy = get_strategy("multiworker")   # reads TF_CONFIG
    """
    if identifier is None or identifier == "none":
        return None
    if isinstance(identifier, tf.distribute.Strategy):
        return identifier
    if identifier == "mirrored":
        return tf.distribute.MirroredStrategy()
    if identifier == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Could not interpret strategy {identifier!r}; valid "
                     f"names: {list(STRATEGIES)} or a tf.distribute.Strategy.")


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "strategy 'multiworker': the TF_CONFIG environment variable is "
            "not set; set it on every worker, e.g. TF_CONFIG='{\"cluster\": "
            "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
            "{\"type\": \"worker\", \"index\": 0}}'")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"strategy 'multiworker': TF_CONFIG is not valid "
                         f"JSON ({e}); got {raw[:80]!r}") from None
    for key in ("cluster", "task"):
        if not isinstance(config, dict) or key not in config:
            raise ValueError(f"strategy 'multiworker': TF_CONFIG has no "
                             f"{key!r} entry; it needs 'cluster' and 'task'.")
    return config


def is_chief(strategy=None) -> bool:
    """Whether this process writes files: always, except in a multi-worker
    cluster, where only the chief (``chief:0``, or ``worker:0`` when the
    cluster has no chief) does.

    Example:
        >>> if is_chief(strategy): artifact.save(out_dir)
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_name(strategy=None) -> Optional[str]:
    """``"worker:1"`` in a multi-worker cluster, else ``None``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return None
    return f"{resolver.task_type}:{resolver.task_id}"


def _all_values_ranges(model) -> List[Tuple[tf.Variable, tf.Variable]]:
    """(min, max) variables of every layer using tfmot's
    ``AllValuesQuantizer`` (the input ``QuantizeLayer`` of a QAT model)."""
    all_values = tfmot.quantization.keras.quantizers.AllValuesQuantizer
    out = []
    for layer in model.layers:
        if isinstance(getattr(layer, "quantizer", None), all_values) and \
                getattr(layer, "quantizer_vars", None):
            out.append((layer.quantizer_vars["min_var"],
                        layer.quantizer_vars["max_var"]))
    return out


class SyncQuantizeRanges(keras.callbacks.Callback):
    """At every epoch end, set the all-values input ranges of a QAT model
    to their min/max over all replicas (every worker must run it: it is a
    collective). A no-op on one replica or without such ranges.

    Example:
        >>> with strategy.scope():
        ...     qat = tfcompress.quantize(model); qat.compile(...)
        >>> qat.fit(x, y, callbacks=[SyncQuantizeRanges()])
    """

    def __init__(self):
        super().__init__()
        self._sync = None

    def on_train_begin(self, logs=None):
        self._sync = None  # built for this fit's model

    def on_epoch_end(self, epoch, logs=None):
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync < 2:
            return
        if self._sync is None:
            ranges = _all_values_ranges(self.model)
            if not ranges:
                return
            self._sync = _make_sync(strategy, ranges)
        self._sync()

    def get_config(self):
        return {}


def _make_sync(strategy, ranges):
    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        for lo, hi in ranges:
            lo.assign(tf.reduce_min(
                ctx.all_gather(tf.expand_dims(lo.read_value(), 0), 0), 0))
            hi.assign(tf.reduce_max(
                ctx.all_gather(tf.expand_dims(hi.read_value(), 0), 0), 0))

    @tf.function
    def sync():
        strategy.run(replica_fn)
    return sync


@contextlib.contextmanager
def write_dir(path: Optional[str], strategy=None) -> Iterator[Optional[str]]:
    """``path`` on the chief; on other workers a temporary folder removed
    afterwards. Every worker must save a model under a multi-worker
    strategy (saving can read variables collectively), but only the chief's
    copy is kept.

    Example:
        >>> with write_dir(checkpoint_dir, strategy) as folder:
        ...     model.save(os.path.join(folder, "stage_0.keras"))
    """
    if path is None or is_chief(strategy):
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="tfcompress_worker_")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
