"""The CLI with click's CliRunner: every command on a tiny model, and bad
input that must end in one line and a non-zero exit."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli.main import main
from conftest import classification_data, compile_clf, small_cnn

TINY_RECIPE = """
stages:
  - prune: {target_sparsity: 0.5, schedule: constant, epochs: 1}
  - quantize: {epochs: 1}
fit: {batch_size: 32, loss: sparse_categorical_crossentropy, from_logits: true,
      verbose: 0}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    x, y = classification_data(np.random.default_rng(0), n=200)
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=3, verbose=0)
    paths = {"model": str(root / "tiny.keras"), "data": str(root / "d.npz"),
             "recipe": str(root / "r.yaml"), "root": root}
    model.save(paths["model"])
    np.savez(paths["data"], x=x, y=y)
    (root / "r.yaml").write_text(TINY_RECIPE)
    np.savez(str(root / "nox.npz"), inputs=x)
    np.savez(str(root / "shape.npz"), x=x[:, :4, :4], y=y)
    np.savez(str(root / "labels.npz"), x=x, y=y + 10)
    (root / "bad.yaml").write_text("stages: [{prune: {sparsity: 0.5}}]")
    return paths


def _run(*args):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result):
    assert result.exit_code != 0
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_help_lists_commands_with_examples():
    result = _run("--help")
    assert result.exit_code == 0
    for cmd in ("optimize", "convert", "validate", "inspect", "bench"):
        assert cmd in result.output
        sub = _run(cmd, "--help")
        assert sub.exit_code == 0 and "Example:" in sub.output


def test_help_does_not_import_tensorflow():
    code = ("import sys; from tfcompress.cli import main; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def test_optimize_convert_validate_inspect_bench(files, tmp_path):
    out = str(tmp_path / "opt")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    result = _run("optimize", files["model"], "--data", files["data"],
                  "--recipe", files["recipe"], "--target", "android",
                  "--labels", str(labels), "--normalization", "0.5,2",
                  "--io", "float32",
                  # a 55% tiny model judged on 40 samples (2.5 points each);
                  # the guard itself is tested in test_accuracy_guard.py
                  "--max-accuracy-drop", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.load(open(os.path.join(out, "report.json")))
    # x ~ N(0, 1) is no normalized pixel data: float32 I/O (uint8 refused)
    assert report["tflite"]["input"]["dtype"] == "float32"
    assert report["android"]["plan"]["task"] == "image_classifier"
    assert [s["kind"] for s in report["stages"]] == ["prune", "quantize"]
    assert report["stages"][1]["scheme"] == "PQAT"
    # agreement is with the user's float model (not the QAT model): on this
    # 55% tiny model it is reported, and accuracy decides within the drop
    lite = report["validation"]["litert"]
    assert 0.0 < lite["agreement"] <= 1.0
    assert report["float"]["accuracy"] - lite["accuracy"] <= 0.5
    assert "accuracy" in report["keras"]
    android = report["android"]
    assert android["signature"]["inputs"] == ["image"]
    assert android["labels"] == ["a", "b", "c", "d"]
    for variant in ("int8", "fp16"):
        assert os.path.isfile(os.path.join(out, "android",
                                           android["variants"][variant]["file"]))
    sidecar = json.load(open(os.path.join(out, "android", "model.json")))
    assert sidecar["normalization"]["mean"] == [0.5]
    assert "latency" not in report  # wall-clock numbers: timings.json
    lat = json.load(open(os.path.join(out, "timings.json")))["latency"][
        "models"]
    assert set(lat) == {"float32", "int8", "float16"}
    assert all(m["threads"]["1"]["median_ms"] > 0 for m in lat.values())
    tflite = os.path.join(out, "model.tflite")

    conv = str(tmp_path / "conv")
    result = _run("convert", files["model"], "--data", files["data"],
                  "--target", "android", "--mode", "float16", "--out", conv)
    assert result.exit_code == 0, result.output
    assert json.load(open(os.path.join(conv, "report.json")))["mode"] == \
        "float16"

    result = _run("validate", tflite, "--data", files["data"])
    assert result.exit_code == 0, result.output
    assert "litert accuracy" in result.output

    result = _run("inspect", tflite, "--json")
    assert result.exit_code == 0, result.output
    assert "FULLY_CONNECTED" in result.output

    result = _run("bench", tflite, "--threads", "1", "--runs", "5")
    assert result.exit_code == 0, result.output
    assert "median" in result.output


@pytest.mark.parametrize("args,culprit", [
    (["convert", "missing.keras", "--data", "{data}", "--out", "{out}"],
     "missing.keras"),
    (["convert", "{model}", "--data", "missing.npz", "--out", "{out}"],
     "missing.npz"),
    (["convert", "{model}", "--data", "{root}/nox.npz", "--out", "{out}"],
     "no array for input 'image' (found ['inputs']); save 'x'"),
    (["convert", "{model}", "--data", "{root}/shape.npz", "--out", "{out}"],
     "(200, 4, 4, 1)"),
    (["optimize", "{model}", "--data", "{root}/labels.npz", "--recipe",
      "{recipe}", "--out", "{out}"], "labels in [10,"),
    (["optimize", "{model}", "--data", "{data}", "--recipe",
      "{root}/bad.yaml", "--out", "{out}"], "stages[0].prune.sparsity"),
    (["validate", "{data}", "--data", "{data}"], "TFL3"),
    (["inspect", "missing.tflite"], "missing.tflite"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(files, tmp_path, args,
                                                   culprit):
    fill = {"data": files["data"], "model": files["model"],
            "recipe": files["recipe"], "root": str(files["root"]),
            "out": str(tmp_path / "o")}
    line = _one_line_error(_run(*[a.format(**fill) for a in args]))
    assert culprit in line
    assert not os.path.exists(tmp_path / "o" / "model.tflite")


def test_convert_for_micro_checks_a_device_budget(files, tmp_path):
    out = tmp_path / "micro"
    result = _run("convert", files["model"], "--data", files["data"],
                  "--target", "micro", "--device", "cortex-m0+", "--out",
                  str(out))
    assert result.exit_code == 0, result.output
    report = json.load(open(out / "report.json"))
    budget = report["budget"]
    assert budget["profile"] == "cortex-m0+"
    # the verdict describes exactly the emitted array and 32-bit arena
    shipped = report["micro"]
    assert budget["ram"]["used"] == shipped["arena"]["bytes"]
    assert budget["flash"]["used"] == shipped["array_bytes"] == \
        len((out / shipped["file"]).read_bytes())
    assert "fits cortex-m0+" in result.output
    header = (out / "model_data.h").read_text()
    assert f"kTensorArenaSize32 = {shipped['arena']['bytes']};" in header
    assert f"kModelDataSize = {shipped['array_bytes']};" in header
    tiny = _run("convert", files["model"], "--data", files["data"],
                "--target", "micro", "--ram", "64", "--flash", "1024",
                "--out", str(tmp_path / "tiny"))
    assert tiny.exit_code == 0, tiny.output
    fit = json.load(open(tmp_path / "tiny" / "report.json"))["budget"]
    assert fit["fits"] is False and fit["ram"]["headroom"] < 0


def test_unknown_device_is_refused_before_work(files, tmp_path):
    line = _one_line_error(_run(
        "convert", files["model"], "--data", files["data"], "--target",
        "micro", "--device", "pdp-11", "--out", str(tmp_path / "o")))
    assert "pdp-11" in line and "cortex-m4" in line


@pytest.mark.parametrize("fmt", [".h5", ".keras", "savedmodel"])
def test_convert_accepts_every_model_format(files, tmp_path, fmt):
    from tfcompress import keras
    with __import__("tfcompress").scope():
        model = keras.models.load_model(files["model"])
    path = str(tmp_path / ("m" + fmt if fmt != "savedmodel" else "sm"))
    if fmt == "savedmodel":
        model.save(path, save_format="tf")
    else:
        model.save(path)
    out = tmp_path / "out"
    result = _run("convert", path, "--data", files["data"], "--target",
                  "android", "--mode", "int8", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.load(open(out / "report.json"))
    # a Keras model goes through the Android plan: x ~ N(0, 1) with no
    # --normalization is no pixel data, so a generic model with float32
    # edges; a SavedModel has no Keras shapes to plan with: int8 edges
    assert report["tflite"]["input"]["dtype"] == (
        "int8" if fmt == "savedmodel" else "float32")
    assert report["validation"]["litert"]["agreement"] >= 0.98


def test_sensitivity_writes_a_recipe_that_optimize_accepts(files, tmp_path):
    out = tmp_path / "sens"
    result = _run("sensitivity", files["model"], "--data", files["data"],
                  "--max-accuracy-drop", "0.05", "--epochs", "1",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "sensitivity.png").stat().st_size > 5_000
    from tfcompress.pipeline.recipe import Recipe
    rec = Recipe.load(str(out / "recipe.yaml"))
    assert rec.stages and rec.stages[0].epochs == 1
    both = _run("sensitivity", files["model"], "--data", files["data"],
                "--out", str(out))
    assert both.exit_code != 0 and "exactly one" in both.output
