"""How every recipe stage fine-tunes: the loss that matches the model, a
per-stage learning-rate schedule, epochs scaled by data size, best-weights
restore on validation data and BatchNorm statistics that do not drift.

Nothing here wraps or strips a layer; :func:`tfcompress.pipeline.stages.compress`
asks this module how to ``compile`` and ``fit`` each wrapped model. The
functions take the ``keras`` module they work with, so the same settings
serve the Keras 2 (tf_keras + tfmot) and the Keras 3 techniques.

Example:
    >>> loss, info = resolve_loss(fit, model, keras, y)
    >>> plan = stage_plan(stage.params, fit, n_train=len(x))
    >>> lr = learning_rate(keras, plan)          # cosine decay over the stage
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Tuple

import numpy as np

from tfcompress.pipeline.recipe import RecipeError

CLASSIFICATION = ("sparse_categorical_crossentropy",
                  "categorical_crossentropy", "binary_crossentropy")
#: output activations that already produce probabilities
PROBABILITY = ("softmax", "sigmoid")


def output_activation(model) -> Optional[str]:
    """Name of the activation the model's (first) output ends with:
    ``softmax``, ``sigmoid``, ``linear``, ... or ``None`` when unknown."""
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    while layer is not None and getattr(layer, "layers", None):
        layer = layer.layers[-1]  # a nested model: its last layer
    if layer is None:
        return None
    name = type(layer).__name__
    if name == "Softmax":
        return "softmax"
    config = layer.get_config()
    activation = config.get("activation")
    if isinstance(activation, dict):  # serialized function or object
        activation = activation.get("config", {}).get("name") or \
            activation.get("class_name")
    if activation is None:
        return None
    return str(getattr(activation, "__name__", activation)).lower()


def _loss_config(loss) -> dict:
    if hasattr(loss, "get_config"):
        return loss.get_config()
    return {}


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    return str(getattr(loss, "name", None) or type(loss).__name__)


def resolve_loss(fit: dict, model, keras, y=None) -> Tuple[Any, dict]:
    """The loss each stage compiles with, and where it came from.

    Order: the recipe's ``fit.loss``; else the model's compiled loss; else,
    for integer labels and a multi-class output, sparse categorical cross
    entropy. A classification loss's ``from_logits`` follows the output
    layer: a model ending in softmax/sigmoid gets ``from_logits=False``
    whatever the recipe says (training a probability output as logits
    learns the wrong thing); a linear output gets ``True``.

    Returns:
        ``(loss, info)``: ``info`` holds ``name``, ``from_logits``,
        ``source`` and, when the recipe was overruled, ``note``.
    """
    activation = output_activation(model)
    probabilities = activation in PROBABILITY
    name = fit.get("loss")
    info: dict = {"output_activation": activation}
    if name is None:
        compiled = getattr(model, "compiled_loss", None)
        loss = getattr(model, "loss", None)
        if loss is None and compiled is not None:
            loss = getattr(compiled, "_user_losses", None)
        if loss is not None:
            config = _loss_config(loss)
            info.update(name=_loss_name(loss), source="model.compile",
                        from_logits=config.get("from_logits"))
            return loss, info
        if y is not None and np.issubdtype(np.asarray(y).dtype, np.integer) \
                and _units(model) > 1:
            name = "sparse_categorical_crossentropy"
            info["source"] = "inferred: integer labels, multi-class output"
        else:
            raise RecipeError(
                "fit.loss: the model is not compiled and the recipe has no "
                "loss; add e.g. `loss: sparse_categorical_crossentropy`")
    else:
        info["source"] = "recipe fit.loss"
    try:
        keras.losses.get(name)
    except ValueError:
        raise RecipeError(f"fit.loss: unknown loss {name!r}") from None
    info["name"] = name
    if name not in CLASSIFICATION:
        return name, info
    wanted = fit.get("from_logits")
    from_logits = not probabilities if activation is not None else (
        True if wanted is None else bool(wanted))
    if wanted is not None and bool(wanted) != from_logits:
        info["note"] = (f"fit.from_logits: {str(wanted).lower()} overruled: "
                        f"the output layer applies {activation}")
    info["from_logits"] = from_logits
    class_name = "".join(p.capitalize() for p in name.split("_"))
    return keras.losses.get({"class_name": class_name,
                             "config": {"from_logits": from_logits}}), info


def _units(model) -> int:
    shape = model.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return int(shape[-1] or 0) if shape else 0


@dataclasses.dataclass
class StagePlan:
    """How long and how fast one stage trains."""

    epochs: int
    steps_per_epoch: int
    learning_rate: float
    schedule: str           # "cosine" or "constant"
    restore_best: bool
    freeze_batchnorm: bool
    start_epoch: int = 0    # first epoch eligible for best-weights restore

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _pick(params: dict, fit: dict, key: str):
    value = params.get(key)
    return fit[key] if value is None else value


def stage_plan(params: dict, fit: dict, n_train: int,
               kind: str = "") -> StagePlan:
    """Epochs, steps, learning rate and schedule of one stage.

    The stage's ``epochs`` are multiplied by ``fit.epochs_scale`` (the
    CLI's ``--epochs``), then raised until the stage runs at least
    ``fit.min_steps`` optimizer steps (small data sets get more epochs) and
    lowered until it runs at most ``fit.max_steps`` (large ones get fewer).
    A stage the recipe gives 0 epochs stays at 0.
    """
    batch = params.get("batch_size") or fit["batch_size"]
    per_epoch = max(1, math.ceil(n_train / batch))
    epochs = int(params["epochs"])
    if epochs:
        scale = float(fit.get("epochs_scale", 1.0))
        epochs = max(1, int(round(epochs * scale)))
        low = math.ceil(fit.get("min_steps", 0) * scale / per_epoch)
        high = fit.get("max_steps")
        epochs = max(epochs, low)
        if high:
            epochs = max(1, min(epochs, math.ceil(high * scale / per_epoch)))
    start = 0
    if kind == "prune" and epochs:
        # weights from before the sparsity ramp ends are not prunable results
        from tfcompress.keras2.schedules import RAMP_FRACTION
        start = min(epochs - 1, math.ceil(RAMP_FRACTION * epochs) - 1)
    return StagePlan(
        epochs=epochs, steps_per_epoch=per_epoch,
        learning_rate=float(_pick(params, fit, "learning_rate")),
        schedule=str(_pick(params, fit, "lr_schedule")),
        restore_best=bool(_pick(params, fit, "restore_best")),
        freeze_batchnorm=bool(_pick(params, fit, "freeze_batchnorm")),
        start_epoch=max(0, start))


def learning_rate(keras, plan: StagePlan):
    """A float, or a cosine decay from ``plan.learning_rate`` to 5% of it
    over the stage's steps."""
    if plan.schedule == "constant" or plan.steps <= 1:
        return plan.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        plan.learning_rate, decay_steps=plan.steps, alpha=0.05)


def restore_best(keras, plan: StagePlan, monitor: str):
    """Keras' ``EarlyStopping`` used only to restore the best epoch's
    weights at the end of the stage (it never stops early)."""
    return keras.callbacks.EarlyStopping(
        monitor=monitor, patience=plan.epochs + 1, restore_best_weights=True,
        start_from_epoch=plan.start_epoch, verbose=0)


def monitor_for(metrics: list, fit: dict) -> str:
    """``fit.monitor``, or ``val_loss``."""
    return fit.get("monitor") or "val_loss"


@dataclasses.dataclass
class Distiller:
    """Distillation from the float ``teacher``: the loss and metric to
    compile with, and :meth:`targets` to pack labels with its outputs."""

    teacher: Any
    loss: Any
    metrics: list
    info: dict

    def targets(self, x, y) -> np.ndarray:
        return distill_targets(self.teacher, x, y)


def distiller(fit: dict, teacher, loss_info: dict, y) -> Optional[Distiller]:
    """A :class:`Distiller` when ``fit.distill_alpha`` is set and the task
    is sparse-label classification, else ``None``."""
    if fit.get("distill_alpha") is None or not can_distill(loss_info, y):
        return None
    from tfcompress.keras2.env import tf
    logits = output_activation(teacher) not in PROBABILITY
    alpha, temp = float(fit["distill_alpha"]), float(
        fit["distill_temperature"])
    return Distiller(teacher, distill_loss(tf, logits, alpha, temp),
                     [label_accuracy(tf)], {**loss_info, "distill": {
                         "teacher": "the float model", "alpha": alpha,
                         "temperature": temp}})


def can_distill(loss_info: dict, y) -> bool:
    """Distillation applies to sparse-label classification."""
    y = np.asarray(y)
    return "sparse_categorical" in str(loss_info.get("name", "")) and \
        np.issubdtype(y.dtype, np.integer) and y.ndim == 1


def freeze_batchnorm(model, keras) -> int:
    """Keep every BatchNormalization layer's moving statistics and scale as
    trained (inference mode during fit): the few fine-tuning batches of a
    compression stage would otherwise pull them toward a noisy estimate.
    Returns how many layers were frozen."""
    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            count += 1
    return count


def _all_layers(model):
    seen = set()
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack += list(getattr(layer, "layers", []) or [])
        inner = getattr(layer, "layer", None)  # wrappers
        if inner is not None:
            stack.append(inner)


def distill_targets(teacher, x, y, batch_size: int = 256) -> np.ndarray:
    """``[label, teacher outputs...]`` per sample: what :func:`distill_loss`
    and :func:`label_accuracy` read. The teacher is the user's float model,
    so every stage learns to keep its predictions."""
    out = np.asarray(teacher.predict(np.asarray(x, np.float32), verbose=0,
                                     batch_size=batch_size), np.float32)
    labels = np.asarray(y, np.float32).reshape(len(out), 1)
    return np.concatenate([labels, out.reshape(len(out), -1)], axis=1)


def distill_loss(tf, from_logits: bool, alpha: float, temperature: float):
    """Sparse cross entropy on the label (weight ``alpha``) plus the KL
    divergence to the teacher's softened outputs (weight ``1 - alpha``,
    scaled by ``temperature**2``, Hinton et al. 2015)."""
    t = float(temperature)

    def logits(p):
        return p if from_logits else tf.math.log(tf.clip_by_value(
            p, 1e-7, 1.0))

    def loss(y_true, y_pred):
        labels = tf.cast(y_true[:, 0], tf.int32)
        teacher = logits(tf.cast(y_true[:, 1:], y_pred.dtype))
        student = logits(y_pred)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels,
                                                              student)
        soft_t = tf.nn.softmax(teacher / t)
        soft = tf.reduce_sum(soft_t * (tf.nn.log_softmax(teacher / t)
                                       - tf.nn.log_softmax(student / t)), -1)
        return alpha * hard + (1.0 - alpha) * soft * t * t

    loss.__name__ = "distill_crossentropy"
    return loss


def label_accuracy(tf):
    """Top-1 accuracy against the label column of distillation targets."""
    def accuracy(y_true, y_pred):
        labels = tf.cast(y_true[:, 0], tf.int64)
        return tf.cast(tf.equal(tf.argmax(y_pred, -1), labels), tf.float32)

    accuracy.__name__ = "accuracy"
    return accuracy
