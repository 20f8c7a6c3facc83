"""The sample models end to end: what `make tflite` promises."""

import numpy as np
import pytest

from converters.tflite import flatbuffer
from sample_models import build, digits


@pytest.fixture(scope="module")
def digits_pcqat(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    art = build.build("digits", str(out))
    return art, out


def test_digits_pcqat_keeps_sparsity_and_clusters_in_int8(digits_pcqat):
    art, _ = digits_pcqat
    report = art.report
    assert [s["kind"] for s in report["stages"]] == ["prune", "cluster",
                                                     "quantize"]
    assert report["stages"][-1]["scheme"] == "PCQAT"
    kernels = flatbuffer.weight_stats(flatbuffer.read(art.plain_tflite))
    assert len(kernels) == 4
    for k in kernels:
        assert k["dtype"] == "int8"
        assert k["sparsity"] >= 0.74, k
        assert k["unique"] <= 16, k  # per output channel when per-channel


def test_digits_int8_accuracy_and_agreement(digits_pcqat):
    art, out = digits_pcqat
    report = art.report
    info = flatbuffer.read(art.tflite)
    assert [t.dtype for t in info.input_details + info.output_details] == \
        ["INT8", "INT8"]
    lite = report["validation"]["litert"]
    assert lite["accuracy"] >= 0.95
    assert lite["agreement"] >= 0.98
    assert report["float"]["accuracy"] - lite["accuracy"] <= 0.01
    micro = report["validation"]["micro"]
    assert micro["agreement"] >= 0.98 and micro["arena_bytes"] > 0
    for name in ("model.tflite", "model_data.cc", "model_data.h",
                 "report.json", "report.md"):
        assert (out / "digits" / name).stat().st_size > 0
    assert (out / "digits" / "model.tflite").read_bytes() == art.tflite


def test_digits_micro_flash_is_a_tenth_of_float32(digits_pcqat):
    """PCQAT + HUFFMAN/PRUNE weights: the shipped micro model is <= 0.10 of
    the float32 .tflite, its TFLM outputs equal the plain int8 model's."""
    from converters.runtimes import tflm
    art, out = digits_pcqat
    report = art.report
    assert len(art.tflite) == report["tflite"]["bytes"]
    assert len(art.tflite) <= 0.10 * report["float"]["bytes"]
    assert report["float"]["accuracy"] - \
        report["validation"]["litert"]["accuracy"] <= 0.01
    encoded = {t["encoding"] for t in report["encodings"]["tensors"]}
    assert "huffman" in encoded
    assert "TFLM_DECODE" in flatbuffer.read(art.tflite).op_names
    (_, _), (x_test, _) = digits.load_data()
    scale, zp = flatbuffer.read(art.tflite).input_details[0].scale[0], \
        flatbuffer.read(art.tflite).input_details[0].zero_point[0]
    xq = np.clip(np.round(x_test[:40] / scale + zp), -128, 127).astype(np.int8)
    plain = tflm.run(art.plain_tflite, xq)[0]
    assert np.array_equal(tflm.run(art.tflite, xq)[0], plain)
    assert (out / "digits" / "model.tflite").read_bytes() == art.tflite


def test_digits_split_is_fixed():
    (x1, y1), (t1, _) = digits.load_data()
    (x2, y2), (t2, _) = digits.load_data()
    assert x1.shape == (1437, 8, 8, 1) and t1.shape == (360, 8, 8, 1)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert 0.0 <= x1.min() and x1.max() <= 1.0


def test_sine_beats_tflm_hello_world(tmp_path):
    art = build.build("sine", str(tmp_path))
    assert len(art.tflite) <= 2704
    assert art.report["validation"]["micro"]["arena_bytes"] <= 3000
    assert art.report["validation"]["litert"]["max_abs_error"] < 0.1
    assert art.passed


@pytest.mark.slow
def test_two_builds_are_byte_identical(tmp_path):
    first = build.build("sine", str(tmp_path / "a")).tflite
    second = build.build("sine", str(tmp_path / "b")).tflite
    assert first == second


def test_summary_table_prints_a_dash_for_what_was_not_measured():
    row = {"model": "sine", "metric": "mae", "float": 0.05, "int8": 0.06,
           "agreement": None, "float_bytes": 3296, "int8_bytes": 2648,
           "gzip_bytes": 1500, "array_bytes": None, "arena": 1360,
           "passed": True}
    head, line = build.table([row]).splitlines()
    assert line.split() == ["sine", "mae", "0.0500", "0.0600", "-", "3,296",
                            "2,648", "1,500", "-", "1,360", "ok"]
