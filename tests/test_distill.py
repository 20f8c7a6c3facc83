"""Knowledge distillation: the loss, the Keras model, the recipe stage, and
that a distilled student beats the same student trained alone on digits."""

import numpy as np
import pytest

from tfcompress.analysis import stats
from tfcompress.keras2.env import keras
from tfcompress.keras2.distill import Distiller, distillation_loss
from tfcompress.pipeline.recipe import Recipe, RecipeError
from tfcompress.pipeline.stages import compress

from conftest import compile_clf, small_cnn

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _mlp(seed, shape=(8, 8, 1), classes=4, units=16):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(shape), keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu", name="hidden"),
        keras.layers.Dense(classes, name="logits")], name="student")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_distillation_loss_is_t2_times_kl():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4))
    p, q = _softmax(t / 2.0), _softmax(s / 2.0)
    want = 4.0 * np.mean(np.sum(p * np.log(p / q), -1))
    got = float(distillation_loss(t.astype("float32"), s.astype("float32"), 2.0))
    assert got == pytest.approx(want, rel=1e-5)
    assert float(distillation_loss(t.astype("float32"), t.astype("float32"),
                                   2.0)) == pytest.approx(0.0, abs=1e-6)


def test_config_round_trip_and_argument_checks():
    d = Distiller(_mlp(0), small_cnn(), temperature=3.0, alpha=0.25,
                  preserve_zeros=True)
    config = d.get_config()
    again = Distiller.from_config(config)
    assert again.get_config() == config
    assert (again.temperature, again.alpha, again.preserve_zeros) == (3.0, 0.25, True)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(_mlp(0), small_cnn(), temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        Distiller(_mlp(0), small_cnn(), alpha=1.5)
    with pytest.raises(ValueError, match="teacher 'small_cnn' outputs"):
        Distiller(_mlp(0, classes=3), small_cnn())


def test_alpha_one_is_plain_training_and_metrics_are_logged(clf_data):
    x, y = clf_data
    plain = compile_clf(_mlp(1))
    keras.utils.set_random_seed(5)
    plain.fit(x, y, epochs=1, batch_size=32, verbose=0)
    d = Distiller(_mlp(1), small_cnn(), temperature=4.0, alpha=1.0)
    d.compile(keras.optimizers.Adam(1e-3), CE, metrics=["accuracy"])
    keras.utils.set_random_seed(5)
    h = d.fit(x, y, epochs=1, batch_size=32, verbose=0, validation_split=0.0)
    for a, b in zip(plain.get_weights(), d.student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(h.history)
    # alpha=1: the total loss is the student loss
    assert h.history["loss"][0] == pytest.approx(h.history["student_loss"][0], rel=1e-5)
    np.testing.assert_allclose(d.predict(x[:8], verbose=0),
                               d.student.predict(x[:8], verbose=0), atol=1e-6)


def test_preserve_zeros_keeps_the_student_sparse(clf_data):
    x, y = clf_data
    student = _mlp(2)
    kernel = student.get_layer("hidden").kernel
    w = kernel.numpy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.6)] = 0.0
    kernel.assign(w)
    d = Distiller(student, small_cnn(), preserve_zeros=True)
    d.compile(keras.optimizers.Adam(1e-2), CE)
    d.fit(x, y, epochs=1, batch_size=32, verbose=0)
    after = student.get_layer("hidden").kernel.numpy()
    assert np.all(after[w == 0] == 0)
    assert not np.allclose(after[w != 0], w[w != 0])    # it did train


def _recipe(**distill):
    return {"stages": [{"distill": {"epochs": 2, **distill}}],
            "fit": {"loss": "sparse_categorical_crossentropy",
                    "from_logits": True, "verbose": 0, "learning_rate": 0.005}}


def test_recipe_stage_fields_are_validated():
    rec = Recipe.from_dict(_recipe(teacher="t.keras", temperature=2, alpha=0.5))
    assert rec.stages[0].params == {
        "teacher": "t.keras", "temperature": 2, "alpha": 0.5, "epochs": 2,
        "learning_rate": None, "batch_size": None, "lr_schedule": None,
        "restore_best": None, "freeze_batchnorm": None}
    with pytest.raises(RecipeError, match=r"stages\[0\].distill.alpha"):
        Recipe.from_dict(_recipe(alpha=2.0))
    with pytest.raises(RecipeError, match=r"stages\[0\].distill.temperature"):
        Recipe.from_dict(_recipe(temperature=0))


def test_compress_runs_a_distill_stage_with_a_teacher_file(tmp_path, clf_data):
    x, y = clf_data
    teacher = compile_clf(small_cnn())
    teacher.fit(x, y, epochs=3, verbose=0)
    path = str(tmp_path / "teacher.keras")
    teacher.save(path)
    student = _mlp(3)
    before = [w.copy() for w in student.get_weights()]
    result = compress(student, (x, y), None, _recipe(teacher=path))
    assert result.model is student          # the student, unwrapped
    assert isinstance(result.model, keras.Sequential)
    hist = result.history[0]["history"]
    assert len(hist["distillation_loss"]) == 2
    assert hist["distillation_loss"][1] < hist["distillation_loss"][0]
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))


def test_distill_after_prune_keeps_sparsity_and_defaults_to_input_model(clf_data):
    x, y = clf_data
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=2, verbose=0)
    reference = [w.copy() for w in model.get_weights()]
    rec = {"stages": [{"prune": {"target_sparsity": 0.5, "epochs": 1}},
                      {"distill": {"epochs": 1}}],
           "fit": {"verbose": 0}}
    result = compress(model, (x, y), None, rec)
    sparsity = stats.summary(result.model)["sparsity"]
    assert sparsity == pytest.approx(0.5, abs=0.03)
    # teacher omitted: a frozen copy of the model given to compress()
    for a, b in zip(reference, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RecipeError, match="after a cluster stage"):
        compress(model, (x, y), None, {
            "stages": [{"cluster": {"clusters": 4, "epochs": 0}},
                       {"distill": {"epochs": 1}}], "fit": {"verbose": 0}})


@pytest.fixture(scope="module")
def digits_teacher(digits_data):
    from sample_models import digits
    (x, y), _ = digits_data
    teacher = digits.build_model(0)
    digits.compile_model(teacher)
    teacher.fit(x, y, epochs=digits.EPOCHS, batch_size=32, verbose=0)
    return teacher


def _digits_student(seed):
    return _mlp(seed, classes=10, units=32)


@pytest.mark.slow
def test_distilled_student_beats_student_trained_alone_on_digits(
        digits_data, digits_teacher):
    """Same student (Flatten-Dense32-Dense10), same 300 labelled samples,
    same 100 epochs, same seeds: the distilled one is more accurate."""
    (x, y), (x_te, y_te) = digits_data
    alone, distilled = [], []
    for seed in (0, 1):
        idx = np.random.default_rng(seed).choice(len(x), 300, replace=False)
        s = _digits_student(seed)
        s.compile(keras.optimizers.Adam(3e-3), CE, metrics=["accuracy"])
        keras.utils.set_random_seed(seed)
        s.fit(x[idx], y[idx], epochs=100, batch_size=32, verbose=0)
        alone.append(s.evaluate(x_te, y_te, verbose=0)[1])
        d = Distiller(_digits_student(seed), digits_teacher, 4.0, 0.1)
        d.compile(keras.optimizers.Adam(3e-3), CE, metrics=["accuracy"])
        keras.utils.set_random_seed(seed)
        d.fit(x[idx], y[idx], epochs=100, batch_size=32, verbose=0)
        distilled.append(d.evaluate(x_te, y_te, verbose=0)[-1])
    print(f"digits test accuracy: alone {np.mean(alone):.4f} {alone}, "
          f"distilled {np.mean(distilled):.4f} {distilled}")
    assert np.mean(distilled) > np.mean(alone) + 0.005
