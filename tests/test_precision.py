"""Per-layer activation precision (int8 / int16x8 / float fallback): the
ai-edge-quantizer recipe, the flatbuffer it makes, the measured planner
under a budget, LiteRT and TFLM agreement with the float model, the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters.conversion import precision as prec
from converters.conversion.modes import convert_bytes
from converters.runtimes import litert, tflm
from tfcompress.analysis import precision
from tfcompress.keras2.env import keras

L = keras.layers


def _outlier_model(spike: float):
    """``hidden`` has one channel near ``spike`` that ``mid`` ignores: it
    sets the per-tensor activation range, so at int8 the other channels
    lose their precision (int16 keeps it for spike 100; at 3e4 only float
    does). Weights stay ordinary (per-channel int8 is fine)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8,), name="x")
    h = L.Dense(16, activation="relu", name="hidden")(i)
    h = L.Dense(16, activation="relu", name="mid")(h)
    model = keras.Model(i, L.Dense(4, name="out")(h))
    w, b = model.get_layer("hidden").get_weights()
    b[0] = spike
    model.get_layer("hidden").set_weights([w, b])
    w2, b2 = model.get_layer("mid").get_weights()
    w2[0, :] = 0.0
    model.get_layer("mid").set_weights([w2, b2])
    return model


@pytest.fixture(scope="module")
def data():
    return np.random.RandomState(1).randn(300, 8).astype(np.float32)


@pytest.fixture(scope="module")
def micro_run(data):
    model = _outlier_model(100.0)
    ev = precision.Evaluator(model, data, None, target="micro")
    sens = precision.analyze(ev)
    plan = precision.choose(ev, sens, max_accuracy_drop=0.02)
    return model, ev, sens, plan


def test_int16_layers_where_planned_and_tflm_agrees(micro_run, data,
                                                    tmp_path):
    model, ev, sens, plan = micro_run
    # all int8 loses the small channels; the plan recovers the float model
    assert sens.uniform["int8"].accuracy < 0.9
    assert plan.met and plan.trial.accuracy >= 0.98
    assert plan.precisions["hidden"] == plan.precisions["mid"] == "int16"
    assert plan.trial.bytes < 1.2 * sens.uniform["int8"].bytes
    tflite = precision.apply(ev, plan)
    dtypes = prec.compute_dtypes(tflite)
    assert {n: dtypes[n] == "INT16" for n in dtypes} == {
        n: p == "int16" for n, p in plan.precisions.items()}
    report = precision.validate(ev, plan, model, data)
    assert report["passed"], report["failures"]
    assert report["litert"]["agreement"] >= 0.98
    assert report["micro"]["agreement"] == 1.0   # TFLM vs LiteRT
    # the AEQ recipe written beside it reproduces the same model
    import ai_edge_quantizer
    paths = precision.write(sens, plan, ev, str(tmp_path), tflite=tflite,
                            validation=report)
    recipe = json.loads(open(paths["aeq_recipe"]).read())
    assert recipe[0]["regex"] == ".*" and any(
        e["op_config"]["activation_tensor_config"]["num_bits"] == 16
        for e in recipe[1:])
    q = ai_edge_quantizer.Quantizer(ev.float_tflite)
    q.load_quantization_recipe(paths["aeq_recipe"])
    again = q.quantize(q.calibrate({"serving_default": [
        {"x": data[i:i + 1]} for i in range(200)]}),
        enable_progress_report=False).quantized_model
    assert prec.compute_dtypes(bytes(again)) == dtypes
    plan_yaml = open(paths["recipe"]).read()
    assert "precision:" in plan_yaml and "hidden: int16" in plan_yaml
    # the project's recipe applies to the model again: the same model
    from tfcompress.analysis import precision_run
    assert prec.compute_dtypes(precision_run.apply_recipe(
        model, data, paths["recipe"])) == dtypes
    with pytest.raises(ValueError, match="expected a 'precision' section"):
        precision_run.apply_recipe(model, data, {"stages": []})
    assert open(paths["png"], "rb").read(4) == b"\x89PNG"


def test_android_float_fallback_where_int16_is_not_enough(data):
    model = _outlier_model(3e4)
    ev = precision.Evaluator(model, data, None, target="android")
    sens = precision.analyze(ev)
    assert sens.uniform["int16"].accuracy < 0.9      # 16 bits are too few
    plan = precision.choose(ev, sens, max_accuracy_drop=0.02)
    assert plan.met and "float" in plan.precisions.values()
    tflite = precision.apply(ev, plan)
    dtypes = prec.compute_dtypes(tflite)
    for name, p in plan.precisions.items():
        assert dtypes[name] == {"int8": "INT8", "int16": "INT16",
                                "float": "FLOAT32"}[p]
    report = precision.validate(ev, plan, model, data)
    assert report["passed"] and report["litert"]["agreement"] >= 0.98
    # a byte budget below that plan keeps the float layers out
    small = precision.choose(ev, sens, max_bytes=sens.uniform["int8"].bytes
                             + 200)
    assert "float" not in small.precisions.values()
    assert small.trial.bytes <= sens.uniform["int8"].bytes + 200


def test_micro_refuses_float_and_unknown_layers(micro_run):
    _, ev, _, _ = micro_run
    with pytest.raises(ValueError, match="'hidden': float layers do not "
                                         "run on the micro target"):
        ev.quantizer.apply({"hidden": "float"}, target="micro")
    with pytest.raises(ValueError, match="'nope'.*its layers: "):
        ev.quantizer.apply({"nope": "int16"})
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        ev.quantizer.apply({"mid": "int4"})
    with pytest.raises(ValueError, match="below the all-int8 model"):
        precision.choose(ev, precision.analyze(ev), max_bytes=100)


def test_int16_ops_tflm_runs(data):
    """Every op of MICRO_INT16_OPS this model has runs at int16 in TFLM
    and agrees with the float model (through LiteRT)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 2), name="img")
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(i)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = L.Add(name="add")([h, d])
    h = L.AveragePooling2D(2, name="ap")(h)
    h = L.Conv2D(8, 1, activation="sigmoid", name="pw")(h)
    h = L.MaxPooling2D(3, name="mp")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dense(8, activation="tanh", name="fc")(h)
    model = keras.Model(i, L.Dense(3, activation="softmax", name="out")(h))
    x = np.random.RandomState(0).rand(40, 6, 6, 2).astype(np.float32)
    q = prec.Quantizer(convert_bytes(model, mode="float32"), x)
    ops = {op for layer in q.layers.values() for op in layer.ops}
    assert {"DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "LOGISTIC",
            "MAX_POOL_2D", "MEAN", "TANH", "SOFTMAX"} <= ops
    assert ops <= prec.MICRO_INT16_OPS
    tflite = q.apply({n: "int16" for n in q.layers}, target="micro")
    assert set(prec.compute_dtypes(tflite).values()) == {"INT16"}
    run = litert.run(tflite, x, reference_kernels=True)
    ref = model.predict(x, verbose=0)
    assert np.abs(run.outputs - ref).max() < 0.01
    got = tflm.run(tflite, run.raw_inputs)[0]
    assert np.abs(got.astype(int) - run.raw_outputs.astype(int)).max() <= 2


def test_cli_activations_micro(tmp_path, data):
    model = _outlier_model(100.0)
    model.save(str(tmp_path / "m.keras"))
    np.savez(str(tmp_path / "d.npz"), x=data)
    out = tmp_path / "out"
    result = CliRunner().invoke(__import__(
        "tfcompress.cli.main", fromlist=["main"]).main, [
        "sensitivity", str(tmp_path / "m.keras"), "--data",
        str(tmp_path / "d.npz"), "--activations", "--max-accuracy-drop",
        "0.02", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "hidden=int16" in result.output
    body = json.loads((out / "precision.json").read_text())
    assert body["validation"]["passed"] and body["plan"]["met"]
    assert body["validation"]["micro"]["agreement"] == 1.0
    # the artifact set of the micro target: checked, validated in LiteRT,
    # TFLM and the TFLM C++ build, C source with the measured arena
    report = json.loads((out / "micro" / "report.json").read_text())
    assert report["mode"] == "mixed" and report["validation"]["passed"]
    assert report["precision"]["layers"]["hidden"] == "int16"
    assert report["micro"]["cpp_check"]["64"]["identical"]
    assert (out / "micro" / "model_data.h").is_file()
    # (android) a budget no plan meets: one line, exit 1, the files still
    # written, the model not under the shipping name
    again = CliRunner().invoke(__import__(
        "tfcompress.cli.main", fromlist=["main"]).main, [
        "sensitivity", str(tmp_path / "m.keras"), "--data",
        str(tmp_path / "d.npz"), "--activations", "--target", "android",
        "--max-accuracy-drop", "0.0", "--max-bytes", str(body["sensitivity"]["uniform"]["int8"][
            "bytes"] + 50), "--out", str(tmp_path / "o2")])
    assert again.exit_code == 1
    assert "the budget is not met" in again.output
    assert (tmp_path / "o2" / "precision.json").is_file()
    assert (tmp_path / "o2" / "android" / "model.rejected.tflite").is_file()
    assert not (tmp_path / "o2" / "android" / "model.tflite").exists()


_KERAS3 = '''
import json, sys
import numpy as np
import keras
from tfcompress.analysis import precision_run
keras.utils.set_random_seed(0)
i = keras.Input((8,), name="x")
h = keras.layers.Dense(16, activation="relu", name="hidden")(i)
h = keras.layers.Dense(16, activation="relu", name="mid")(h)
m = keras.Model(i, keras.layers.Dense(4, name="out")(h))
w, b = m.get_layer("hidden").get_weights()
b[0] = 100.0
m.get_layer("hidden").set_weights([w, b])
w2, b2 = m.get_layer("mid").get_weights()
w2[0, :] = 0.0
m.get_layer("mid").set_weights([w2, b2])
x = np.random.RandomState(1).randn(300, 8).astype(np.float32)
r = precision_run.run(m, x, None, target="micro", out_dir=sys.argv[1],
                      max_accuracy_drop=0.02, ship=False)
print(json.dumps({"keras": keras.__version__, "met": r["plan"].met,
                  "precisions": r["plan"].precisions,
                  "dtypes": r["validation"]["dtypes"],
                  "micro": r["validation"]["micro"]["agreement"],
                  "passed": r["validation"]["passed"]}))
'''


@pytest.mark.slow   # a child process with TensorFlow and Keras 3: ~30 s
def test_keras3_model_layer_names_and_tflm(tmp_path):
    """A Keras 3 model (child process: Keras 3 traces layers under
    uniquified scopes such as ``hidden_1``): the plan names its layers."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in [env.get("PYTHONPATH")] if p])
    script = tmp_path / "k3.py"
    script.write_text(_KERAS3)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "o")],
                          env=env, capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["keras"].startswith("3.")
    assert got["met"] and got["passed"] and got["micro"] == 1.0
    assert set(got["precisions"]) == {"hidden", "mid", "out"}
    assert got["precisions"]["hidden"] == got["precisions"]["mid"] == "int16"
    assert got["dtypes"]["hidden"] == "INT16"
    assert (tmp_path / "o" / "model.tflite").is_file()
