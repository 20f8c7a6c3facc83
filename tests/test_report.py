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
    assert report["tflite"]["input"]["dtype"] == "int8"
    assert {"agreement", "accuracy"} <= set(report["validation"]["litert"])
    assert "accuracy" in report["keras"]
    assert report["versions"]["tensorflow"] == "2.21.0"
    assert [s["kind"] for s in report["stages"]] == ["prune", "quantize"]
    assert report["stages"][0]["sparsity"] == pytest.approx(0.5, abs=0.01)


def _chromium():
    import shutil
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("report.html browser check: no Chromium on this machine "
                "(`make test` installs Debian's chromium where apt works)")


def _screenshot(page: str, png: str, height: int = 2400) -> np.ndarray:
    import subprocess

    from PIL import Image
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--window-size=1100,{height}",
                    f"--screenshot={png}", f"file://{page}"],
                   check=True, capture_output=True, timeout=120)
    with Image.open(png) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def _dom(page: str) -> str:
    import subprocess
    return subprocess.run([_chromium(), "--headless", "--no-sandbox",
                           "--disable-gpu", "--dump-dom", f"file://{page}"],
                          check=True, capture_output=True, text=True,
                          timeout=120).stdout


def test_report_html_stands_alone(out_dir):
    page = open(os.path.join(out_dir, "report.html")).read()
    report = json.load(open(os.path.join(out_dir, "report.json")))
    # every plot embedded, nothing fetched from elsewhere
    assert page.count('src="data:image/png;base64,') == len(report["plots"])
    for bad in ("http://", "https://", "<script", "<link"):
        assert bad not in page
    assert "Validation passed" in page and "tfcompress convert" in page


def test_report_html_renders_verdict_and_plots_in_a_browser(out_dir, tmp_path):
    page = os.path.join(out_dir, "report.html")
    dom = _dom(page)
    assert 'id="verdict"' in dom and "Validation passed" in dom
    assert dom.count("<img") == 3
    shot = _screenshot(page, str(tmp_path / "page.png"))
    assert shot.std() > 10                          # not blank
    # the green verdict banner (#1f8a4c) is drawn
    green = np.all(np.abs(shot - [0x1f, 0x8a, 0x4c]) < 8, axis=-1)
    assert green.sum() > 5_000
    # the plots are drawn: matplotlib's default blue (#1f77b4 family) or
    # the bar colour (#4c72b0) covers many pixels below the tables
    blue = (np.all(np.abs(shot - [0x4c, 0x72, 0xb0]) < 12, axis=-1)
            | np.all(np.abs(shot - [0x1f, 0x77, 0xb4]) < 12, axis=-1))
    assert blue.sum() > 1_000


def test_report_html_failure_is_red(out_dir, tmp_path):
    from converters.reporting import html
    report = json.load(open(os.path.join(out_dir, "report.json")))
    report["validation"]["passed"] = False
    report["validation"]["reason"] = "accuracy dropped by 4.2 points"
    page = tmp_path / "failed.html"
    page.write_text(html.render(report, {}, out_dir))
    assert "Validation FAILED: accuracy dropped by 4.2 points" in page.read_text()
    shot = _screenshot(str(page), str(tmp_path / "failed.png"), height=900)
    red = np.all(np.abs(shot - [0xc0, 0x39, 0x2b]) < 8, axis=-1)
    assert red.sum() > 5_000
