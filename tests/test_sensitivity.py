"""Sensitivity analysis: per-layer sweeps, plans that meet a budget, the
recipe they write, and the real int8 .tflite bytes on digits."""

import numpy as np
import pytest
import yaml

from tfcompress.analysis import sensitivity as sens_mod
from tfcompress.keras2.env import keras
from tfcompress.pipeline.recipe import Recipe

from conftest import classification_data, compile_clf, small_cnn


def test_magnitude_prune_and_kmeans():
    w = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    p = sens_mod.magnitude_prune(w, 0.75)
    assert np.mean(p == 0) == pytest.approx(0.75, abs=1 / 48)
    kept = p != 0
    assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()
    c = sens_mod.kmeans_1d(p, 4, keep_zeros=True)
    assert np.all(c[~kept] == 0)
    assert len(np.unique(c[kept])) <= 4
    assert np.abs(c - p).max() < np.abs(w).max() / 2


@pytest.fixture(scope="module")
def trained():
    x, y = classification_data(np.random.default_rng(0), n=384)
    model = compile_clf(small_cnn(), lr=3e-3)
    model.fit(x[:256], y[:256], epochs=8, verbose=0)
    return model, x[256:], y[256:]


def test_analyze_measures_each_layer_alone(trained):
    model, x, y = trained
    before = [w.copy() for w in model.get_weights()]
    sens = sens_mod.analyze(model, x, y)
    assert sens.baseline > 0.5
    assert [r["layer"] for r in sens.layers] == ["conv", "fc", "logits"]
    fc = {r["layer"]: r for r in sens.layers}["fc"]
    assert set(fc["prune"]) == {0.5, 0.75, 0.9} and set(fc["cluster"]) == {16, 8, 4}
    # 90% of the biggest layer zeroed without training costs accuracy
    assert fc["prune"][0.9] > fc["prune"][0.5] - 0.02
    assert max(fc["prune"][0.9], sens.layers[-1]["prune"][0.9]) > 0.02
    for a, b in zip(before, model.get_weights()):      # weights restored
        np.testing.assert_array_equal(a, b)


def test_accuracy_mode_plan_recipe_and_files(trained, tmp_path):
    model, x, y = trained
    sens = sens_mod.analyze(model, x, y)
    plan = sens_mod.choose(model, sens, x, y=y, max_accuracy_drop=0.03)
    assert plan.predicted_drop <= 0.03
    assert plan.estimated_bytes < plan.baseline_bytes
    assert plan.measured_bytes < plan.baseline_bytes
    drops = {r["layer"]: r for r in sens.layers}
    for name, s in plan.settings.items():     # every choice was measured
        assert s["sparsity"] == 0 or s["sparsity"] in drops[name]["prune"]
    rec = Recipe.from_dict(plan.recipe(epochs=1))
    assert rec.stages[-1].kind == "quantize"
    paths = sens_mod.write(sens, plan, str(tmp_path), epochs=1)
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert Recipe.from_dict(yaml.safe_load(open(paths["recipe"]))).to_dict() == \
        rec.to_dict()
    with pytest.raises(ValueError, match="exactly one of max_bytes"):
        sens_mod.choose(model, sens, x)
    with pytest.raises(ValueError, match="max_bytes=100 cannot be met"):
        sens_mod.choose(model, sens, x, max_bytes=100)


def test_greedy_prefers_cheap_savings():
    options = {"a": [(0.0, None, 100, 0.0), (0.5, None, 60, 0.001)],
               "b": [(0.0, None, 100, 0.0), (0.5, None, 50, 0.2)]}
    choice, size, drop = sens_mod._greedy(options, 170, None, 0)
    assert choice == {"a": 1, "b": 0} and size == 160 and drop == 0.001
    choice, size, _ = sens_mod._greedy(options, None, 0.1, 0)
    assert choice == {"a": 1, "b": 0}


@pytest.mark.slow
def test_budget_plan_meets_real_int8_bytes_on_digits(digits_data):
    """max_bytes is met by the real gzip size of the int8 .tflite converted
    after running the chosen recipe (prune/cluster/QAT with training)."""
    from converters.conversion.modes import convert_bytes
    from sample_models import digits
    from tfcompress.pipeline.stages import compress

    (x, y), (x_val, y_val) = digits_data
    model = digits.build_model(0)
    digits.compile_model(model)
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    sens = sens_mod.analyze(model, x_val, y_val)
    base = sens_mod.gzip_bytes(convert_bytes(model, x_val[:200], mode="int8"))
    target = int(0.5 * base)
    plan = sens_mod.choose(model, sens, x_val, y=y_val, max_bytes=target)
    assert plan.measured_bytes <= target
    result = compress(model, (x, y), (x_val, y_val),
                      plan.recipe(epochs=1, fit={"verbose": 0}))
    tflite = convert_bytes(result.model, x_val[:200], mode="int8")
    real = sens_mod.gzip_bytes(tflite)
    keras_acc = float(np.mean(np.argmax(result.model.predict(
        x_val, verbose=0), -1) == y_val))
    print(f"digits: int8 gzip bytes {base} -> {real} (target {target}, "
          f"plan {plan.estimated_bytes}); accuracy {sens.baseline:.3f} -> "
          f"{keras_acc:.3f}; settings {plan.settings}")
    assert real <= target
    assert keras_acc > sens.baseline - 0.05
    assert isinstance(result.model, keras.Model)


def test_int8_conversion_keeps_integer_token_ids():
    """The sweep's int8 model of a token-id model takes int32 ids (the
    DATA.npz dtype), not floats."""
    from converters.tflite import flatbuffer
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(50, 4, name="embed")(inp)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    x = np.random.default_rng(0).integers(0, 50, size=(32, 8))  # int64
    info = flatbuffer.read(sens_mod._int8_tflite(model, x))
    assert info.input_details[0].dtype == "INT32"
    assert flatbuffer.float_ops(info) == []
