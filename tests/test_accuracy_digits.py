"""End-to-end on digits (slow): the built-in pcqat and prune_qat recipes
with the CLI's defaults keep the float accuracy on a test split no model
has seen, and a mixed-precision plan meets a byte budget 20% below the
uniform int8 flash, validated in TFLM. The 3-seed medians are measured by
``python -m benchmarks.accuracy``."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    from sample_models import digits
    root = tmp_path_factory.mktemp("digits")
    (x, y), (xt, yt) = digits.load_data()
    model = digits.build_model()
    digits.compile_model(model)
    model.fit(x, y, epochs=digits.EPOCHS, batch_size=digits.BATCH_SIZE,
              verbose=0)
    model.save(str(root / "digits.keras"))
    np.savez(str(root / "digits.npz"), x=x, y=y)
    np.savez(str(root / "test.npz"), x=xt, y=yt)
    from tfcompress.pipeline import data as datasets
    _, (xv, yv) = datasets.split(x, y, datasets.HOLDOUT)
    np.savez(str(root / "holdout.npz"), x=xv, y=yv)
    return {"model": str(root / "digits.keras"),
            "data": str(root / "digits.npz"),
            "holdout": str(root / "holdout.npz"), "keras": model, "x": x,
            "test": str(root / "test.npz"),
            "float_test": float(np.mean(np.argmax(model.predict(
                xt, verbose=0), -1) == yt))}


def _optimize(files, recipe, out, *extra):
    return CliRunner().invoke(main, [
        "optimize", files["model"], "--data", files["data"], "--recipe",
        recipe, "--target", "micro", "--out", str(out), *extra])


def _tflm_accuracy(tflite: bytes, path: str) -> float:
    """Top-1 accuracy of a micro model (int8 I/O; maybe LUT-encoded, which
    only TFLM decodes) on ``path``, run in the TFLM interpreter."""
    from converters.runtimes import tflm
    from converters.tflite.flatbuffer import read
    data = np.load(path)
    q = read(tflite).input_details[0]
    x = np.clip(np.round(data["x"] / q.scale[0] + q.zero_point[0]), -128,
                127).astype(np.int8)
    out = tflm.run(tflite, x)[0]
    return float(np.mean(np.argmax(out.reshape(len(x), -1), -1)
                         == data["y"]))


@pytest.mark.parametrize("recipe", ["pcqat", "prune_qat"])
def test_recipe_with_defaults_keeps_the_float_accuracy(digits_files,
                                                       tmp_path, recipe):
    # digits.npz is the float model's own training data (it scores ~100% on
    # any holdout of it): with the defaults every stage trains on all of it
    # and the guard compares on the seeded holdout all models saw; the
    # honest number is on the test split no model has seen
    result = _optimize(digits_files, recipe, tmp_path, "--seed", "0")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    comp = report["comparison"]
    assert comp["verdict"]["passed"]
    assert comp["data"]["holdout_trained"] and comp["data"]["trained"] == \
        len(digits_files["x"])
    assert comp["int8_ptq"]["accuracy"] is not None
    assert comp["int8_ptq"]["bytes"] > comp["compressed"]["flash_bytes"]
    assert report["stages"][0]["sparsity"] > 0.7
    assert report["validation"]["micro"]["passed"]
    assert (tmp_path / "model.tflite").is_file()
    # the honest number: the shipped model in TFLM on the test split that
    # neither the float model nor any stage has seen
    test = _tflm_accuracy((tmp_path / "model.tflite").read_bytes(),
                          digits_files["test"])
    assert test >= digits_files["float_test"] - 0.005, (
        test, digits_files["float_test"])


def test_mixed_precision_plan_meets_a_budget_in_tflm(digits_files, tmp_path):
    from converters import convert_bytes
    int8 = convert_bytes(digits_files["keras"], digits_files["x"][:500])
    budget = int(0.8 * len(int8))
    sens = tmp_path / "sens"
    result = CliRunner().invoke(main, [
        "sensitivity", digits_files["model"], "--data",
        digits_files["holdout"], "--weight-bits", "--max-bytes", str(budget),
        "--epochs", "3", "--out", str(sens)])
    assert result.exit_code == 0, result.output
    assert (sens / "mixed_precision.png").stat().st_size > 5_000
    plan = json.loads((sens / "mixed_precision.json").read_text())["plan"]
    assert min(plan["bits"].values()) < 8
    out = tmp_path / "out"
    result = _optimize(digits_files, str(sens / "recipe.yaml"), out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    # the shipped micro model: LUT-encoded where the encoding planner chose
    # it, proven in TFLM against LiteRT and the plain int8 model
    encoded = report["encodings"]
    assert any(t["encoding"] == "lut" for t in encoded["tensors"])
    assert report["validation"]["micro"]["passed"]
    assert report["tflite"]["bytes"] <= budget
    comp = report["comparison"]
    assert comp["compressed"]["flash_bytes"] <= 0.8 * comp["int8_ptq"][
        "flash_bytes"]
    assert comp["verdict"]["drop_vs_float"] <= 0.01
    print("mixed weight bits:", plan["bits"], "budget", budget,
          "shipped", report["tflite"]["bytes"], "PTQ flash",
          comp["int8_ptq"]["flash_bytes"], "drop", comp["verdict"])


def test_weight_bits_and_activation_precision_in_tflm(digits_files,
                                                      tmp_path):
    """Weight bits (LUT) and int8/int16 activations per layer together: a
    budget 20% below the uniform int8 model, at most 1 point below float
    on the test split, validated in LiteRT and TFLM (the LUT-compressed
    model identical to the plain one in TFLM)."""
    from converters import convert_bytes
    int8 = convert_bytes(digits_files["keras"], digits_files["x"][:500])
    budget = int(0.8 * len(int8))
    out = tmp_path / "precision"
    result = CliRunner().invoke(main, [
        "sensitivity", digits_files["model"], "--data",
        digits_files["test"], "--weight-bits", "--activations",
        "--max-bytes", str(budget), "--max-accuracy-drop", "0.01",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    body = json.loads((out / "precision.json").read_text())
    plan, val = body["plan"], body["validation"]
    assert plan["met"] and min(plan["weight_bits"].values()) < 8
    assert val["bytes"] <= budget
    shipped = json.loads((out / "micro" / "report.json").read_text())
    assert shipped["validation"]["passed"]
    assert shipped["tflite"]["bytes"] <= budget    # stripped, encoded
    assert plan["drop"] <= 0.01
    assert val["passed"] and val["lut"]["identical_to_plain"]
    assert val["micro"]["agreement"] >= 0.99
    print("weight bits + activations:", plan["weight_bits"],
          plan["precisions"], "bytes", val["bytes"], "budget", budget,
          "uniform int8", len(int8), "drop", plan["drop"], "shipped",
          shipped["tflite"]["bytes"], shipped["micro"]["arena"]["bytes"])
