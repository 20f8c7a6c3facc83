"""Reports: PNGs are real images of non-trivial size, and report.md links
them."""

import json
import os

import numpy as np
import pytest

from tfcompress.pipeline import jobs as pipeline
from tfcompress.pipeline.stages import compress
from conftest import classification_data, compile_clf, small_cnn

RECIPE = {"stages": [{"prune": {"target_sparsity": 0.5, "epochs": 2}},
                     {"quantize": {"epochs": 1}}],
          "fit": {"verbose": 0, "loss": "sparse_categorical_crossentropy",
                  "from_logits": True}}


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("report"))
    x, y = classification_data(np.random.default_rng(0), n=200)
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=2, verbose=0)
    result = compress(model, (x, y), None, RECIPE)
    pipeline.convert_and_validate(
        result.model, x, x, y, target="android", out_dir=out, name="tiny",
        float_model=model, stages=result.history, layer_report=result.report)
    return out


@pytest.mark.parametrize("name", ["size_vs_accuracy", "layer_sparsity",
                                  "training_curves"])
def test_plots_are_real_images(out_dir, name):
    from PIL import Image
    path = os.path.join(out_dir, f"{name}.png")
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        width, height = img.size
        assert width >= 300 and height >= 200
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 5  # not a blank canvas
    assert os.path.getsize(path) > 5_000


def test_report_md_links_every_plot_and_json_has_contract_keys(out_dir):
    md = open(os.path.join(out_dir, "report.md")).read()
    report = json.load(open(os.path.join(out_dir, "report.json")))
    for name in report["plots"].values():
        assert f"]({name})" in md
    assert set(report["plots"]) == {"size_vs_accuracy", "layer_sparsity",
                                    "training_curves"}
    for key in ("bytes", "gzip_bytes", "ops", "input", "output", "layers"):
        assert key in report["tflite"]
    # android: int8 inside; x ~ N(0, 1) is no pixel data, so float32 edges
    assert report["tflite"]["input"]["dtype"] == "float32"
    assert report["android"]["plan"]["io"] == "float32"
    assert {"agreement", "accuracy"} <= set(report["validation"]["litert"])
    assert "accuracy" in report["keras"]
    assert report["versions"]["tensorflow"] == "2.21.0"
    assert [s["kind"] for s in report["stages"]] == ["prune", "quantize"]
    assert report["stages"][0]["sparsity"] == pytest.approx(0.5, abs=0.01)
