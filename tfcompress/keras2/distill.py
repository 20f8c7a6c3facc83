"""Knowledge distillation: train a small student to match a teacher.

:class:`Distiller` is a ``keras.Model`` wrapping a student and a frozen
teacher; ``fit`` trains the student on the classic Hinton loss::

    alpha * loss(labels, student) + (1 - alpha) * T^2 * KL(p_teacher || p_student)
    p = softmax(logits / T)

Both models must output **logits** (no final softmax): the soft targets are
``softmax(logits / T)``. The hard-label term is the ``loss`` given to
``compile`` (default: sparse categorical cross-entropy from logits).

As a recipe stage (before QAT)::

    stages:
      - distill:  {teacher: big.keras, temperature: 4.0, alpha: 0.1, epochs: 4}
      - quantize: {epochs: 2}

``teacher`` omitted uses the float model given to ``compress()``.

Example:
    >>> d = Distiller(student, teacher, temperature=4.0, alpha=0.1)
    >>> d.compile("adam", keras.losses.SparseCategoricalCrossentropy(
    ...     from_logits=True), metrics=["accuracy"])
    >>> d.fit(x, y, epochs=4)
    >>> small = d.student            # a plain Keras model, trained
"""

from __future__ import annotations

from typing import List, Optional

from tfcompress.pipeline import recipe as recipes
from tfcompress.keras2.env import keras, tf

__all__ = ["Distiller", "distillation_loss", "wrap_stage", "unwrap_stage"]

_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def distillation_loss(teacher_logits, student_logits, temperature: float):
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean."""
    t = tf.cast(temperature, student_logits.dtype)
    log_p = tf.nn.log_softmax(tf.cast(teacher_logits, student_logits.dtype) / t)
    log_q = tf.nn.log_softmax(student_logits / t)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    return tf.reduce_mean(kl) * t * t


@keras.utils.register_keras_serializable(package="tfcompress")
class Distiller(keras.Model):
    """Train ``student`` with soft targets from a frozen ``teacher``.

    Args:
        student: the model to train (outputs logits).
        teacher: a trained model with the same output shape (logits); its
            weights are never updated.
        temperature: softening temperature ``T`` (> 0).
        alpha: weight of the hard-label loss, in [0, 1].
        preserve_zeros: keep the student's zero kernel weights at zero
            during training (set after pruning).

    ``predict``/``evaluate`` run the student. ``compile(optimizer, loss,
    metrics)`` takes the hard-label loss as ``loss``.

    Example:
        >>> d = Distiller(student, teacher, temperature=4.0, alpha=0.1)
        >>> d.compile("adam", metrics=["accuracy"])
        >>> d.fit(x, y, epochs=3)
    """

    def __init__(self, student, teacher, temperature: float = 4.0,
                 alpha: float = 0.1, preserve_zeros: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"Distiller: temperature should be a number > 0. "
                             f"Got: {temperature!r}")
        if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"Distiller: alpha should be a number in [0, 1]. "
                             f"Got: {alpha!r}")
        s_out, t_out = tuple(student.output_shape), tuple(teacher.output_shape)
        if s_out[1:] != t_out[1:]:
            raise ValueError(
                f"Distiller: student {student.name!r} outputs {s_out} but "
                f"teacher {teacher.name!r} outputs {t_out}; both must output "
                "logits of the same shape")
        self.student = student
        self.teacher = teacher
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.preserve_zeros = bool(preserve_zeros)
        # a function, so that Keras does not track the masks as weights
        self._apply_masks = _masker(student if preserve_zeros else None)
        self.student_loss_fn = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Like ``Model.compile``; ``loss`` is the hard-label (student) loss,
        default sparse categorical cross-entropy from logits."""
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.student_loss_fn = keras.losses.get(loss) if loss is not None \
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @property
    def metrics(self):
        own = [self.loss_tracker, self.student_loss_tracker,
               self.distill_loss_tracker]
        rest = [m for m in super().metrics if all(m is not o for o in own)]
        return own + rest

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _step_losses(self, x, y, sample_weight, training: bool):
        teacher_logits = self.teacher(x, training=False)
        student_logits = self.student(x, training=training)
        hard = self.student_loss_fn(y, student_logits,
                                    sample_weight=sample_weight)
        soft = distillation_loss(teacher_logits, student_logits,
                                 self.temperature)
        total = self.alpha * hard + (1.0 - self.alpha) * soft
        if training and self.student.losses:
            total += tf.add_n(self.student.losses)
        return student_logits, hard, soft, total

    def _results(self, y, student_logits, hard, soft, total, sample_weight):
        self.loss_tracker.update_state(total)
        self.student_loss_tracker.update_state(hard)
        self.distill_loss_tracker.update_state(soft)
        self.compiled_metrics.update_state(y, student_logits, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits, hard, soft, total = self._step_losses(x, y, sample_weight, True)
        variables = self.student.trainable_variables
        grads = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self._apply_masks()
        return self._results(y, logits, hard, soft, total, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits, hard, soft, total = self._step_losses(x, y, sample_weight, False)
        return self._results(y, logits, hard, soft, total, sample_weight)

    def get_config(self):
        return {
            "name": self.name,
            "student": keras.utils.serialize_keras_object(self.student),
            "teacher": keras.utils.serialize_keras_object(self.teacher),
            "temperature": self.temperature, "alpha": self.alpha,
            "preserve_zeros": self.preserve_zeros,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("student", "teacher"):
            config[key] = keras.utils.deserialize_keras_object(
                config[key], custom_objects=custom_objects)
        return cls(**config)


def _masker(model):
    """A function that re-zeroes every kernel of ``model`` where it is zero
    now (a no-op for ``None``)."""
    pairs = []
    for var in (model.trainable_variables if model is not None else []):
        short = var.name.split("/")[-1].split(":")[0]
        if short in _KERNELS:
            mask = tf.cast(tf.not_equal(var, 0), var.dtype)
            if float(tf.reduce_min(mask)) == 0.0:
                pairs.append((var, mask))

    def apply():
        for var, mask in pairs:
            var.assign(var * mask)
    return apply


def _load_teacher(path: str):
    from converters.loading.models import load_model
    teacher = load_model(path)
    if isinstance(teacher, str):
        raise recipes.RecipeError(
            f"distill.teacher: {path!r} is a SavedModel folder; save the "
            "teacher as a .keras/.h5 file")
    return teacher


def _frozen_copy(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


def wrap_stage(params: dict, model, report, previous: List[str],
               input_model: Optional[object] = None) -> Distiller:
    """Recipe stage ``distill``: the :class:`Distiller` ``compress`` fits.

    The teacher is ``params["teacher"]`` (a .keras/.h5 path) or, omitted, a
    frozen copy of ``input_model`` (the float model given to ``compress``).
    After a ``prune`` stage the student's zeros are kept; after ``cluster``
    distillation would undo the clustering and is refused.
    """
    if "cluster" in previous:
        raise recipes.RecipeError(
            "distill: a distill stage after a cluster stage would undo the "
            "clustering; put distill before cluster")
    if params.get("teacher"):
        teacher = _load_teacher(params["teacher"])
    else:
        teacher = _frozen_copy(input_model if input_model is not None
                               else model)
    return Distiller(model, teacher, params["temperature"], params["alpha"],
                     preserve_zeros="prune" in previous)


def unwrap_stage(distiller: Distiller):
    """The trained student (the model the next stage starts from)."""
    return distiller.student
