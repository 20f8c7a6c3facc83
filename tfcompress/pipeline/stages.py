"""``compress``: run a :class:`~tfcompress.recipe.Recipe` on a model.

Each stage wraps the model, trains it with ``fit`` and the callbacks it
needs, and strips it; a later stage preserves what earlier stages made
(cluster after prune keeps the zeros; quantize after both is PCQAT). With
``checkpoint_dir`` every finished stage is saved, and a re-run resumes after
the last finished stage; within a stage, every finished epoch is backed up
(weights, optimizer, pruning step), so a run interrupted mid-stage resumes
from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from tfcompress.keras2 import callbacks as cb
from tfcompress.keras2 import clustering
from tfcompress.keras2 import pruning
from tfcompress.keras2 import quantization
from tfcompress.pipeline import recipe as recipes
from tfcompress.pipeline import training
from tfcompress.keras2 import distill
from tfcompress.pipeline import distribute
from tfcompress.analysis import stats
from converters import progress
from converters.files import atomic_write
from tfcompress.keras2.unwrap import scope, strip
from tfcompress.keras2.env import keras


@dataclasses.dataclass
class CompressResult:
    """What :func:`compress` returns."""

    model: Any                      # deployable: stripped (QAT kept)
    history: List[dict]             # per stage: kind, epochs, history, stats
    report: list                    # per-layer compressed/skipped records
    recipe: recipes.Recipe


def _metrics(fit: dict, loss) -> list:
    if fit.get("metrics") is not None:
        return list(fit["metrics"])
    name = loss if isinstance(loss, str) else getattr(loss, "name", "")
    name = str(name)
    return ["accuracy"] if "crossentropy" in name else ["mae"]


def _optimizer(fit: dict, learning_rate: float):
    try:
        opt = keras.optimizers.get(fit["optimizer"])
    except ValueError:
        raise recipes.RecipeError(
            f"fit.optimizer: unknown optimizer {fit['optimizer']!r}") from None
    config = opt.get_config()
    config["learning_rate"] = learning_rate
    return type(opt).from_config(config)


_DESCRIBE = {
    "prune": ("target_sparsity", "{:.0%} sparsity"),
    "cluster": ("clusters", "{} clusters"),
    "quantize": ("weight_bits", "{}-bit weights"),
    "binarize": ("mode", "{}"),
}


def describe(kind: str, params: dict, epochs: int) -> str:
    """``"cluster (16 clusters, 3 epochs)"``: a stage in one phrase."""
    parts = []
    key, fmt = _DESCRIBE.get(kind, (None, ""))
    if key is not None and params.get(key) is not None:
        parts.append(fmt.format(params[key]))
    parts.append(f"{epochs} epoch{'s' if epochs != 1 else ''}")
    return f"{kind} ({', '.join(parts)})"


def _wrap_prune(p: dict, model, report, previous: List[str]):
    return pruning.prune(
        model, p["target_sparsity"], p["schedule"],
        begin_step=p["begin_step"], end_step=p["end_step"],
        frequency=p["frequency"], per_layer=p["per_layer"],
        skip=p["skip"], m_by_n=tuple(p["m_by_n"]) if p["m_by_n"] else None,
        report=report)


def _wrap_cluster(p: dict, model, report, previous: List[str]):
    preserve = p["preserve_sparsity"]
    if preserve is None:
        preserve = "prune" in previous
    return clustering.cluster(
        model, p["clusters"], p["init"], preserve_sparsity=preserve,
        per_channel=p["per_channel"], skip=p["skip"], report=report,
        per_layer=p.get("per_layer"))


def _wrap_quantize(p: dict, model, report, previous: List[str]):
    preserve = p["preserve"]
    if preserve == "auto" and "binarize" in previous:
        preserve = "clusters"  # keep the +-alpha per channel (CQAT)
    return quantization.quantize(model, preserve=preserve,
                                 layers=p["layers"], skip=p["skip"],
                                 report=report,
                                 weight_bits=p.get("weight_bits", 8),
                                 keep_first_last=p.get("keep_first_last",
                                                       True))


def _wrap_binarize(p: dict, model, report, previous: List[str]):
    from tfcompress.keras2 import lowbit
    return lowbit.binarize(model, p["mode"], threshold=p["threshold"],
                           skip=p["skip"],
                           keep_first_last=p["keep_first_last"],
                           report=report)


def _strip_lowbit(model):
    from tfcompress.keras2 import lowbit
    return lowbit.strip_lowbit(model)


@dataclasses.dataclass
class StageKind:
    """How a recipe stage kind runs: ``wrap(params, model, report,
    previous_kinds)`` returns the model to ``fit``; ``unwrap(trained)``
    returns the model the next stage starts from."""

    wrap: Callable
    unwrap: Callable = strip
    #: also pass ``input_model=`` (the model given to ``compress``) to wrap
    needs_input_model: bool = False


def _wrap_channel_prune(p: dict, model, report, previous: List[str]):
    from tfcompress.keras2.channel_pruning import prune_channels
    return prune_channels(model, p["ratio"], p["criterion"], skip=p["skip"],
                          multiple_of=p["multiple_of"], report=report)[0]


def _wrap_low_rank(p: dict, model, report, previous: List[str]):
    from tfcompress.keras2.lowrank import factorize
    if p["energy"] is not None and p["rank"] is not None:
        raise recipes.RecipeError("low_rank: give energy or rank, not both")
    energy = 0.9 if p["energy"] is None and p["rank"] is None else p["energy"]
    return factorize(model, rank=p["rank"], energy=energy, skip=p["skip"],
                     report=report)[0]


def _same(model):
    return model


#: stage name -> how it runs; its recipe fields live in ``recipe.STAGES``.
STAGE_KINDS: Dict[str, StageKind] = {
    "prune": StageKind(_wrap_prune),
    "cluster": StageKind(_wrap_cluster),
    "quantize": StageKind(_wrap_quantize),
    "binarize": StageKind(_wrap_binarize, _strip_lowbit),
    # structured: wrap returns the new smaller model, nothing to strip
    "channel_prune": StageKind(_wrap_channel_prune, _same),
    "low_rank": StageKind(_wrap_low_rank, _same),
    "distill": StageKind(distill.wrap_stage, distill.unwrap_stage,
                         needs_input_model=True),
}


def compress(model, train_data, val_data=None, recipe="recipe.yaml", *,
             callbacks: Optional[list] = None,
             checkpoint_dir: Optional[str] = None, strategy=None,
             log_dir: Optional[str] = None,
             final_train_data=None) -> CompressResult:
    """Run every stage of ``recipe`` on ``model``.

    Args:
        model: a trained Sequential/Functional ``tfcompress.keras`` model.
        train_data: ``(x, y)`` arrays.
        val_data: ``(x, y)`` for validation during fit, or ``None`` to use
            the recipe's ``fit.validation_split``.
        recipe: a :class:`Recipe`, a dict, or a YAML/JSON path.
        callbacks: extra Keras callbacks for every stage's ``fit``.
        checkpoint_dir: save each finished stage there and resume from it.
        strategy: a ``tf.distribute`` strategy (or a name, see
            :func:`tfcompress.distribute.get_strategy`) to wrap and train
            under. In a multi-worker cluster only the chief writes
            ``checkpoint_dir`` and ``log_dir``; every worker reads
            ``checkpoint_dir`` to resume, so put it on a shared file system.
        log_dir: TensorBoard directory for sparsity/unique-weight scalars.
        final_train_data: ``(x, y)`` the last stage trains on instead of
            ``train_data`` (e.g. training plus validation data), without
            validation.

    Returns:
        :class:`CompressResult`: the deployable model and per-stage history.

    Example:
        >>> result = compress(model, (x, y), None, "pcqat")
        >>> artifact = converters.convert(result.model, x[:200], target="micro")
    """
    rec = recipes.get(recipe)
    fit = rec.fit
    x, y = train_data
    loss, loss_info = training.resolve_loss(fit, model, keras, y)
    metrics = _metrics(fit, fit.get("loss") or loss_info.get("name") or loss)
    pack = training.distiller(fit, model, loss_info, y)
    if pack is not None:
        loss, metrics, loss_info = pack.loss, pack.metrics, pack.info
    last = len(rec.stages) - 1
    report = []
    history: List[dict] = []
    done = _resume(checkpoint_dir)
    previous: List[str] = []
    strategy = distribute.get_strategy(strategy)
    chief = distribute.is_chief(strategy)  # only the chief writes files
    scope_ctx = strategy.scope if strategy is not None else contextlib.nullcontext
    current = model
    for i, stage in enumerate(rec.stages):
        if i < len(done):
            history.append(done[i]["history"])
            previous.append(stage.kind)
            current = _load_stage(checkpoint_dir, i)
            continue
        started = time.perf_counter()
        keras.utils.set_random_seed(fit["seed"] + i)
        from tfcompress.keras2.selection import CompressionReport
        stage_report = CompressionReport()
        with scope_ctx():
            kind = STAGE_KINDS[stage.kind]
            extra = {"input_model": model} if kind.needs_input_model else {}
            wrapped = kind.wrap(stage.params, current, stage_report, previous,
                                **extra)
            final = i == last and final_train_data is not None
            if final:  # all the data, no validation
                (xs, ys), vs = final_train_data, None
            else:
                xs, ys, vs = x, y, val_data
            split = 0.0 if final or vs is not None else \
                fit["validation_split"]
            validated = vs is not None or split > 0
            n_train = int(len(xs) * (1 - split))
            if pack is not None:  # labels + the float model's outputs
                ys = pack.targets(xs, ys)
                vs = None if vs is None else (vs[0], pack.targets(*vs))
            plan = training.stage_plan(stage.params, fit, n_train, stage.kind)
            frozen = training.freeze_batchnorm(wrapped, keras) \
                if plan.freeze_batchnorm else 0
            wrapped.compile(
                optimizer=_optimizer(fit, training.learning_rate(keras, plan)),
                loss=loss, metrics=metrics)
        best = [training.restore_best(keras, plan, training.monitor_for(
            metrics, fit))] if plan.restore_best and validated and \
            plan.epochs else []
        stage_cbs = cb.callbacks_for(
            wrapped, log_dir=log_dir if chief else None) + _epoch_resume(
            checkpoint_dir, i, chief) + best + list(callbacks or [])
        if plan.epochs:
            progress.header(f"stage {i + 1}/{len(rec.stages)}: "
                            f"{describe(stage.kind, stage.params, plan.epochs)}")
        h = wrapped.fit(
            xs, ys, epochs=plan.epochs,
            batch_size=stage.params["batch_size"] or fit["batch_size"],
            validation_data=vs, validation_split=split,
            callbacks=stage_cbs,
            verbose=fit["verbose"] and progress.fit_verbose()) if plan.epochs \
            else None
        current = kind.unwrap(wrapped)
        summary = stats.summary(current)
        entry = {
            "stage": i, "kind": stage.kind, "epochs": plan.epochs,
            "params": stage.params, "fit": {
                **plan.to_dict(), "batchnorm_frozen": frozen,
                "best_epoch": best[0].best_epoch if best else None,
                "loss": loss_info},
            "history": _merged_history(checkpoint_dir, i, h),
            "sparsity": summary["sparsity"], "max_unique": summary["max_unique"],
            "seconds": round(time.perf_counter() - started, 2),
        }
        if getattr(wrapped, "qat_scheme", None):
            entry["scheme"] = wrapped.qat_scheme
        step = _pruning_step(wrapped)
        if step is not None:
            entry["pruning_step"] = step
        history.append(entry)
        report += stage_report.to_dict()
        previous.append(stage.kind)
        # every worker saves (saving may be a collective), non-chiefs to a
        # temporary folder
        with distribute.write_dir(checkpoint_dir, strategy) as save_dir:
            _save_stage(save_dir, i, current, entry)
        _forget_epochs(checkpoint_dir if chief else None, i)
    return CompressResult(current, history, report, rec)


class _EpochLog(keras.callbacks.Callback):
    """Keep every finished epoch's logs in ``path`` (JSON, atomic), so a
    stage resumed mid-way reports the history of all its epochs."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        done = _read_epochs(self.path)
        done[str(epoch)] = {k: float(v) for k, v in (logs or {}).items()
                            if np.ndim(v) == 0}
        atomic_write(self.path, json.dumps(done))

    def get_config(self):
        return {"path": self.path}


def _epochs_path(checkpoint_dir: str, i: int) -> str:
    return os.path.join(checkpoint_dir, f"stage_{i}_epochs.json")


def _read_epochs(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _epoch_resume(checkpoint_dir: Optional[str], i: int,
                  chief: bool = True) -> list:
    """Callbacks that make stage ``i`` resumable from its last finished
    epoch: Keras' ``BackupAndRestore`` (weights, optimizer state, the
    pruning step and the epoch counter) and the epoch log. They follow
    ``callbacks_for``'s, so ``PruningStep`` resolves the schedule over the
    whole stage before the restored step is loaded."""
    if not checkpoint_dir:
        return []
    out = [keras.callbacks.BackupAndRestore(
        os.path.join(checkpoint_dir, f"stage_{i}_backup"))]
    if chief:
        os.makedirs(checkpoint_dir, exist_ok=True)
        out.append(_EpochLog(_epochs_path(checkpoint_dir, i)))
    return out


def _merged_history(checkpoint_dir: Optional[str], i: int, h) -> dict:
    """This fit's history, after the epochs a previous run finished."""
    run = {k: [float(v) for v in vals]
           for k, vals in (h.history.items() if h else [])}
    if not checkpoint_dir or h is None:
        return run
    first = h.epoch[0] if h.epoch else len(
        _read_epochs(_epochs_path(checkpoint_dir, i)))
    saved = _read_epochs(_epochs_path(checkpoint_dir, i))
    before = [saved[str(e)] for e in range(first) if str(e) in saved]
    keys = list(run) or (list(before[0]) if before else [])
    return {k: [b[k] for b in before if k in b] + run.get(k, [])
            for k in keys}


def _forget_epochs(checkpoint_dir: Optional[str], i: int) -> None:
    """Drop stage ``i``'s epoch state once the stage itself is saved."""
    if not checkpoint_dir:
        return
    if os.path.exists(_epochs_path(checkpoint_dir, i)):
        os.remove(_epochs_path(checkpoint_dir, i))
    shutil.rmtree(os.path.join(checkpoint_dir, f"stage_{i}_backup"),
                  ignore_errors=True)


def _pruning_step(model) -> Optional[int]:
    """The pruning step of ``model``'s pruning wrappers (None: none)."""
    steps = [int(keras.backend.get_value(layer.pruning_step))
             for layer in model.submodules if hasattr(layer, "pruning_step")
             and hasattr(layer, "pruning_schedule")]
    return max(steps) if steps else None


def _resume(checkpoint_dir: Optional[str]) -> List[dict]:
    if not checkpoint_dir:
        return []
    path = os.path.join(checkpoint_dir, "stages.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _save_stage(checkpoint_dir, i, model, entry) -> None:
    if not checkpoint_dir:
        return
    os.makedirs(checkpoint_dir, exist_ok=True)
    # HDF5: tfmot's QAT models do not reload from the .keras format
    # ("quantize_layer expected 5 variables"); they do from .h5.
    tmp = os.path.join(checkpoint_dir, f".stage_{i}.tmp.h5")
    model.save(tmp)
    os.replace(tmp, _stage_path(checkpoint_dir, i))
    done = _resume(checkpoint_dir)[:i] + [{"history": entry}]
    atomic_write(os.path.join(checkpoint_dir, "stages.json"),
                 json.dumps(done, default=_plain))


def _stage_path(checkpoint_dir, i) -> str:
    return os.path.join(checkpoint_dir, f"stage_{i}.h5")


def _load_stage(checkpoint_dir, i):
    with scope():
        return keras.models.load_model(_stage_path(checkpoint_dir, i))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
