"""The accuracy guard of ``optimize`` (verdicts against the float model and
int8 PTQ), loss settings that follow the model, and how stages fine-tune."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import classification_data, compile_clf, small_cnn
from tfcompress.cli.main import main
from tfcompress.keras2.env import keras
from tfcompress.pipeline import training, verdict
from tfcompress.pipeline.recipe import Recipe


def _row(accuracy):
    return {"accuracy": accuracy, "bytes": 1000}


@pytest.mark.parametrize("comp,ptq,ok,than", [
    (0.985, 0.99, True, None),          # 0.5 point below float: fine
    (0.975, 0.99, False, "float"),      # 1.5 points below float
    (0.99, 1.0, True, None),
    (0.965, 0.99, False, "float"),
])
def test_judge_compares_with_float_and_ptq(comp, ptq, ok, than):
    v = verdict.judge(_row(comp), _row(ptq), {"accuracy": 0.99},
                      max_drop=0.01)
    assert v.passed is ok
    assert v.drop_vs_float == pytest.approx(0.99 - comp)
    assert v.drop_vs_ptq == pytest.approx(ptq - comp)
    if not ok:
        assert "\n" not in v.message
        assert v.message.startswith(
            f"compressed accuracy {100 * comp:.2f}% is "
            f"{100 * (0.99 - comp):.2f} points below the float model")
        assert verdict.REJECTED_NAME in v.message


def test_judge_fails_on_ptq_alone_and_hints_from_the_recipe():
    rec = Recipe.from_dict({"stages": [
        {"prune": {"target_sparsity": 0.98, "epochs": 1}}]})
    # within 1 point of float, but 2 points below plain int8 PTQ
    v = verdict.judge(_row(0.95), _row(0.97), {"accuracy": 0.955},
                      max_drop=0.01, recipe=rec)
    assert not v.passed
    assert "below int8 PTQ" in v.message
    assert "lower target_sparsity (0.98)" in v.message


def _softmax_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    out = keras.layers.Dense(3, activation="softmax", name="probs")(inp)
    return keras.Model(inp, out)


def test_loss_follows_a_softmax_output_even_against_the_recipe():
    model = _softmax_model()
    fit = Recipe.from_dict({"stages": [{"quantize": {}}], "fit": {
        "loss": "sparse_categorical_crossentropy",
        "from_logits": True}}).fit
    loss, info = training.resolve_loss(fit, model, keras)
    assert info["from_logits"] is False and "overruled" in info["note"]
    assert loss.get_config()["from_logits"] is False
    # uncompiled, no recipe loss: inferred from integer labels
    fit = Recipe.from_dict({"stages": [{"quantize": {}}]}).fit
    loss, info = training.resolve_loss(fit, model, keras,
                                       np.array([0, 2, 1]))
    assert info["name"] == "sparse_categorical_crossentropy"
    assert loss.get_config()["from_logits"] is False
    # a logits output gets from_logits true
    logits = small_cnn()
    _, info = training.resolve_loss(fit, logits, keras, np.array([0, 1]))
    assert info["from_logits"] is True


def test_compiled_loss_is_used_when_the_recipe_has_none():
    model = _softmax_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    fit = Recipe.from_dict({"stages": [{"quantize": {}}]}).fit
    loss, info = training.resolve_loss(fit, model, keras)
    assert loss is model.loss and info["source"] == "model.compile"


def test_stage_plan_scales_epochs_and_delays_restore_for_pruning():
    fit = Recipe.from_dict({"stages": [{"quantize": {}}], "fit": {
        "min_steps": 100, "epochs_scale": 2.0, "batch_size": 10}}).fit
    plan = training.stage_plan({"epochs": 3, "learning_rate": None,
                                "batch_size": None}, fit, n_train=100)
    # 3 epochs x 2 = 6, but 2 x 100 steps at 10 steps per epoch = 20
    assert (plan.epochs, plan.steps_per_epoch) == (20, 10)
    assert plan.schedule == "cosine" and plan.restore_best
    prune = training.stage_plan({"epochs": 6, "learning_rate": 1e-4,
                                 "batch_size": None},
                                {**fit, "min_steps": 0, "epochs_scale": 1},
                                n_train=100, kind="prune")
    assert prune.start_epoch == 4 and prune.learning_rate == 1e-4
    lr = training.learning_rate(keras, prune)
    assert float(lr(0)) == pytest.approx(1e-4)
    assert float(lr(prune.steps)) == pytest.approx(5e-6)


FAR_RECIPE = """
stages:
  - prune: {target_sparsity: 0.98, schedule: constant, epochs: 1}
  - quantize: {epochs: 1}
fit: {batch_size: 32, verbose: 0}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    x, y = classification_data(np.random.default_rng(0), n=300)
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=6, verbose=0)
    paths = {"model": str(root / "tiny.keras"), "data": str(root / "d.npz"),
             "far": str(root / "far.yaml"), "root": root}
    model.save(paths["model"])
    np.savez(paths["data"], x=x, y=y)
    (root / "far.yaml").write_text(FAR_RECIPE)
    return paths


def test_recipe_forced_too_far_is_rejected_with_one_line(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.tflite").write_bytes(b"stale from an earlier run")
    result = CliRunner().invoke(main, [
        "optimize", files["model"], "--data", files["data"], "--recipe",
        files["far"], "--target", "micro", "--out", str(out), "--seed", "1"])
    assert result.exit_code == 1, result.output
    errors = [l for l in result.output.splitlines() if l.startswith("Error")]
    assert len(errors) == 1
    assert "points below" in errors[0] and "target_sparsity (0.98)" \
        in errors[0] and "model_ptq.tflite" in errors[0]
    assert not (out / "model.tflite").exists()
    assert not (out / "model_data.cc").exists()
    assert (out / "model.rejected.tflite").stat().st_size > 1000
    assert (out / "model_ptq.tflite").stat().st_size > 1000
    report = json.loads((out / "report.json").read_text())
    comp = report["comparison"]
    assert comp["verdict"]["passed"] is False
    assert comp["verdict"]["drop_vs_float"] > 0.01
    assert comp["int8_ptq"]["accuracy"] > comp["compressed"]["accuracy"]
    assert comp["int8_ptq"]["arena_bytes"] > 0
    # fit.all_data: every stage trains on all 300 rows, as the float model
    # did; the seeded 60-row holdout restores epochs and carries the verdict
    assert comp["data"]["trained"] == 300
    assert comp["data"]["validated"] == 60
    assert comp["data"]["holdout_trained"] is True
    assert comp["data"]["validation"].startswith(
        "seeded 20% holdout of the data; it trains too")
    assert "--val" in comp["data"]["validation"]
    # the stage really pruned 98% and the float model is the reference
    assert report["stages"][0]["sparsity"] > 0.9
    assert report["keras"]["accuracy"] == comp["float"]["accuracy"]
    assert report["validation"]["passed"] is False
    assert "REJECTED" in (out / "report.md").read_text()


def _out(value, passed, metric="mae_growth", task="regression",
         threshold=0.01, higher=False):
    return {"task": task, "metric": metric, "value": value,
            "threshold": threshold, "higher_is_better": higher,
            "passed": passed}


@pytest.mark.parametrize("comp,ptq,ok,words", [
    (_out(0.004, True), _out(0.001, True), True, None),
    (_out(0.049, False), _out(0.0001, True), False, "must be at most 0.01"),
    (_out(0.008, True), _out(-0.004, True), False,
     "more than 0.01 above the int8 PTQ model's -0.004"),
    (_out(0.93, False, "cosine_similarity", "embedding", 0.99, True),
     _out(0.999, True, "cosine_similarity", "embedding", 0.99, True), False,
     "must be at least 0.99"),
])
def test_outputs_without_accuracy_are_judged_by_their_own_metric(
        comp, ptq, ok, words):
    """A regression output is not waved through for lack of an accuracy:
    its own verdict (vs targets and float) and the PTQ baseline decide."""
    v = verdict.judge({"accuracy": None, "outputs": {"score": comp}},
                      {"accuracy": None, "outputs": {"score": ptq}}, {},
                      max_drop=0.01)
    assert v.passed is ok
    assert v.metric == f"score {comp['metric']}"
    assert v.compressed_value == comp["value"]
    assert v.ptq_value == ptq["value"]
    if not ok:
        assert "\n" not in v.message and words in v.message, v.message
        assert v.message.startswith(f"compressed output 'score' "
                                    f"({comp['task']}) {comp['metric']}")
        assert verdict.REJECTED_NAME in v.message


def test_regression_forced_too_far_is_rejected_naming_the_output(tmp_path):
    """optimize on a regression model: the compressed model's error growth
    against the targets decides (it passed with a FAILED output before)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 12)).astype("float32")
    y = (x @ rng.normal(size=(12, 1)) + 0.3 * np.tanh(x[:, :1])).astype(
        "float32")
    model = keras.Sequential([keras.Input((12,)),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1, name="score")])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=40, verbose=0)
    model.save(tmp_path / "reg.h5")
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    (tmp_path / "far.yaml").write_text(FAR_RECIPE)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "optimize", str(tmp_path / "reg.h5"), "--data",
        str(tmp_path / "reg.npz"), "--recipe", str(tmp_path / "far.yaml"),
        "--target", "micro", "--out", str(out), "--seed", "1"])
    assert result.exit_code == 1, result.output
    errors = [l for l in result.output.splitlines() if l.startswith("Error")]
    assert len(errors) == 1 and "output 'score' (regression) mae_growth" \
        in errors[0], result.output
    assert not (out / "model.tflite").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["validation"]["passed"] is False
    comp = report["comparison"]
    assert comp["verdict"]["metric"] == "score mae_growth"
    assert comp["verdict"]["compressed_value"] > 0.01
    assert comp["int8_ptq"]["outputs"]["score"]["passed"] is True
