"""``compress`` for Keras 3 models: run a recipe's prune / cluster /
quantize stages, each with its own ``fit``, the next one starting from the
stripped result of the last (quantize after prune + cluster is PCQAT).

With ``checkpoint_dir`` every finished stage is saved as ``.keras`` and a
re-run resumes after it; within a stage Keras' ``BackupAndRestore`` keeps
the last finished epoch (weights, optimizer, pruning step).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, List, Optional

import keras

from tfcompress.keras3 import callbacks as cb
from tfcompress.keras3 import clustering, pruning, quantization
from tfcompress.keras3.report import CompressionReport
from tfcompress.keras3.strip import strip, summary
from tfcompress.pipeline import recipe as recipes
from tfcompress.pipeline import training

KINDS = ("prune", "cluster", "quantize")


@dataclasses.dataclass
class CompressResult:
    """What :func:`compress` returns (as the tf_keras pipeline's)."""

    model: Any                      # deployable: stripped, QAT baked
    history: List[dict]             # per stage: kind, epochs, history, stats
    report: list                    # per-layer compressed/skipped records
    recipe: recipes.Recipe


def _wrap(kind: str, p: dict, model, report, previous: List[str]):
    if kind == "prune":
        return pruning.prune(
            model, p["target_sparsity"], p["schedule"],
            begin_step=p["begin_step"], end_step=p["end_step"],
            frequency=p["frequency"], per_layer=p["per_layer"],
            skip=p["skip"], m_by_n=tuple(p["m_by_n"]) if p["m_by_n"] else None,
            report=report)
    if kind == "cluster":
        preserve = p["preserve_sparsity"]
        init = p["init"]
        if init not in clustering.INITS:
            raise recipes.RecipeError(
                f"cluster.init: {init!r} is not available for Keras 3 models; "
                f"use one of {list(clustering.INITS)}")
        return clustering.cluster(
            model, p["clusters"], init, per_channel=p["per_channel"],
            preserve_sparsity="prune" in previous if preserve is None
            else preserve, skip=p["skip"], report=report)
    return quantization.quantize(model, preserve=p["preserve"],
                                 layers=p["layers"], skip=p["skip"],
                                 report=report, weight_bits=p["weight_bits"])


def _optimizer(fit: dict, learning_rate: float):
    opt = keras.optimizers.get(fit["optimizer"])
    config = opt.get_config()
    config["learning_rate"] = learning_rate
    return type(opt).from_config(config)


def compress(model, train_data, val_data=None, recipe="recipe.yaml", *,
             callbacks: Optional[list] = None,
             checkpoint_dir: Optional[str] = None, strategy=None,
             log_dir: Optional[str] = None,
             final_train_data=None) -> CompressResult:
    """Run every stage of ``recipe`` on a Keras 3 ``model``.

    Args:
        model: a trained Sequential/Functional Keras 3 model.
        train_data: ``(x, y)`` arrays.
        val_data: ``(x, y)`` for validation, or ``None`` for the recipe's
            ``fit.validation_split``.
        recipe: a :class:`~tfcompress.pipeline.recipe.Recipe`, a dict, or a
            YAML/JSON path; stages ``prune``, ``cluster``, ``quantize``.
        callbacks: extra Keras callbacks for every stage's ``fit``.
        checkpoint_dir: save each finished stage there and resume from it.
        strategy: not supported for Keras 3 models (``None``).
        log_dir: TensorBoard directory for the sparsity scalars.
        final_train_data: ``(x, y)`` the last stage trains on instead of
            ``train_data``, without validation (``fit.final_all_data``).

    Example:
        >>> result = compress(model, (x, y), None, "pcqat")
    """
    rec = recipes.get(recipe)
    if strategy is not None:
        raise ValueError("compress: a tf.distribute strategy is supported for "
                         "tf_keras models only; use keras.distribution for "
                         "Keras 3 or leave strategy unset")
    for stage in rec.stages:
        if stage.kind not in KINDS:
            raise recipes.RecipeError(
                f"stages: {stage.kind!r} is not available for Keras 3 models "
                f"(available: {list(KINDS)}); use a tf_keras model for it")
    fit = rec.fit
    x, y = train_data
    loss, loss_info = training.resolve_loss(fit, model, keras, y)
    name = loss_info.get("name") or getattr(loss, "name", str(loss))
    metrics = list(fit["metrics"]) if fit.get("metrics") is not None else \
        (["accuracy"] if "crossentropy" in str(name) else ["mae"])
    done = _resume(checkpoint_dir)
    history, report, previous = [], [], []
    current = model
    for i, stage in enumerate(rec.stages):
        if i < len(done):
            history.append(done[i])
            previous.append(stage.kind)
            current = keras.models.load_model(_stage_path(checkpoint_dir, i))
            continue
        started = time.perf_counter()
        keras.utils.set_random_seed(fit["seed"] + i)
        stage_report = CompressionReport()
        wrapped = _wrap(stage.kind, stage.params, current, stage_report,
                        previous)
        final = i == len(rec.stages) - 1 and final_train_data is not None
        (xs, ys), vs = (final_train_data, None) if final else \
            ((x, y), val_data)
        split = 0.0 if final or vs is not None else fit["validation_split"]
        validated = vs is not None or split > 0
        plan = training.stage_plan(stage.params, fit,
                                   int(len(xs) * (1 - split)), stage.kind)
        if plan.freeze_batchnorm:
            training.freeze_batchnorm(wrapped, keras)
        wrapped.compile(optimizer=_optimizer(
            fit, training.learning_rate(keras, plan)),
            loss=loss, metrics=metrics)
        extra = [keras.callbacks.BackupAndRestore(
            os.path.join(checkpoint_dir, f"stage_{i}_backup"))] \
            if checkpoint_dir else []
        best = [training.restore_best(keras, plan, training.monitor_for(
            metrics, fit))] if plan.restore_best and validated and \
            plan.epochs else []
        h = wrapped.fit(
            xs, ys, epochs=plan.epochs,
            batch_size=stage.params["batch_size"] or fit["batch_size"],
            validation_data=vs, validation_split=split,
            verbose=fit["verbose"],
            callbacks=cb.callbacks_for(wrapped, log_dir=log_dir) + extra +
            best + list(callbacks or [])) if plan.epochs else None
        step = cb.pruning_step(wrapped)
        current = strip(wrapped)
        stats = summary(current)
        entry = {"stage": i, "kind": stage.kind, "epochs": plan.epochs,
                 "params": stage.params,
                 "history": {k: [float(v) for v in vals] for k, vals in
                             (h.history.items() if h else [])},
                 "sparsity": stats["sparsity"],
                 "max_unique": stats["max_unique"],
                 "seconds": round(time.perf_counter() - started, 2)}
        if getattr(wrapped, "qat_scheme", None):
            entry["scheme"] = wrapped.qat_scheme
        if step is not None:
            entry["pruning_step"] = step
        history.append(entry)
        report += stage_report.to_dict()
        previous.append(stage.kind)
        _save_stage(checkpoint_dir, i, current, history)
    return CompressResult(current, history, report, rec)


def _stage_path(checkpoint_dir: str, i: int) -> str:
    return os.path.join(checkpoint_dir, f"stage_{i}.keras")


def _resume(checkpoint_dir: Optional[str]) -> List[dict]:
    path = os.path.join(checkpoint_dir or "", "stages.json")
    if not checkpoint_dir or not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _save_stage(checkpoint_dir: Optional[str], i: int, model,
                history: List[dict]) -> None:
    if not checkpoint_dir:
        return
    from converters.files import atomic_write
    os.makedirs(checkpoint_dir, exist_ok=True)
    tmp = os.path.join(checkpoint_dir, f".stage_{i}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, _stage_path(checkpoint_dir, i))
    atomic_write(os.path.join(checkpoint_dir, "stages.json"),
                 json.dumps(history, default=str))
