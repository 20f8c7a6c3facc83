"""inspect / gpu / latency on small models, Flex ops included."""

import json

import numpy as np
import pytest

from converters.tflite import flatbuffer
from converters.targets import gpu
from converters.runtimes import latency
from converters.conversion.modes import convert_bytes
from converters.tflite.inspect import format_text, inspect
from tfcompress.keras2.env import keras, tf

IN, OUT = 64, 32  # fc kernel: Keras (64, 32), TFLite (32, 64)


def _model():
    """fc has exactly half zeros per output channel and values {0, +-a_j}."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((IN,), name="features")
    x = keras.layers.Dense(OUT, activation="relu", name="fc")(inp)
    out = keras.layers.Dense(4, name="out")(x)
    model = keras.Model(inp, out)
    rng = np.random.RandomState(0)
    kernel = np.zeros((IN, OUT), np.float32)
    for j in range(OUT):
        rows = rng.permutation(IN)[:IN // 2]
        kernel[rows, j] = 0.1 * (j + 1) * rng.choice([-1.0, 1.0], IN // 2)
    model.get_layer("fc").set_weights([kernel, np.zeros(OUT, np.float32)])
    return model


@pytest.fixture(scope="module")
def models():
    model = _model()
    data = np.random.RandomState(1).rand(64, IN).astype(np.float32)
    return {mode: convert_bytes(model, data, mode=mode)
            for mode in ("float32", "int8", "float16", "int16x8")}


@pytest.fixture(scope="module")
def flex_model():
    """MUL, ADD -> FlexMatrixDeterminant -> ADD: no TFLite builtin for det."""
    @tf.function(input_signature=[tf.TensorSpec([1, 3, 3], tf.float32,
                                                name="x")])
    def fn(x):
        return {"y": tf.linalg.det(tf.nn.relu(x * 2.0 + 1.0)) + 3.0}

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], fn)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                      tf.lite.OpsSet.SELECT_TF_OPS]
    return bytes(conv.convert())


def _fc_kernel(report):
    rows = [t for t in report["tensors"]
            if t["constant"] and t["shape"] == [OUT, IN]]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("mode,unique", [("float32", 1 + 2 * OUT),
                                         ("int8", 3), ("float16", None)])
def test_constant_sparsity_and_unique_values(models, mode, unique):
    kernel = _fc_kernel(inspect(models[mode]))
    assert kernel["sparsity"] == pytest.approx(0.5)
    assert kernel["channel_axis"] == 0
    assert kernel["unique_per_channel_max"] == 3
    if unique is not None:
        assert kernel["unique"] == unique
    if mode == "int8":
        q = kernel["quantization"]
        assert q["per_channel"] and q["channels"] == OUT
        assert q["zero_points"] == [0]


def test_report_fields_int8(models):
    report = inspect(models["int8"])
    json.dumps(report)  # JSON-ready for `tfcompress inspect --json`
    assert report["mode"] == "int8"
    assert report["ops"] == {"FULLY_CONNECTED": 2}
    assert report["signatures"] == {
        "serving_default": {"inputs": ["features"], "outputs": ["out"]}}
    (inp,), (out,) = report["inputs"], report["outputs"]
    assert (inp["dtype"], inp["shape"], inp["signature_name"]) == (
        "int8", [1, IN], "features")
    assert out["dtype"] == "int8" and out["quantization"]["scale"] > 0
    size = report["size"]
    assert sum(size[k] for k in ("constant_bytes", "quantization_bytes",
                                 "graph_bytes", "metadata_bytes")) \
        == size["total_bytes"] == len(models["int8"])
    info = flatbuffer.read(models["int8"])  # float32 scale + int64 zp
    assert size["quantization_bytes"] == sum(
        4 * len(t.scale) + 8 * len(t.zero_point) for t in info.tensors)
    assert size["quantization_bytes"] >= 12 * OUT  # the per-channel fc
    assert size["graph_bytes"] > 0
    assert IN * OUT <= size["constant_bytes"] < 2 * IN * OUT
    assert "min_runtime_version" in report["metadata"]
    assert report["gpu"]["compatible"] is True
    assert "float view" in report["gpu"]["note"]


def test_size_breakdown_tracks_weight_dtype(models):
    sizes = {m: inspect(b)["size"]["constant_bytes"] for m, b in
             models.items()}
    assert sizes["float32"] >= 4 * IN * OUT
    assert 2 * IN * OUT <= sizes["float16"] < 4 * IN * OUT
    assert sizes["int8"] < 2 * IN * OUT


def test_flex_ops_are_neither_gpu_nor_micro_compatible(flex_model):
    report = inspect(flex_model)
    assert "FlexMatrixDeterminant" in report["ops"]
    assert report["micro"]["compatible"] is False
    assert "Flex" in report["micro"]["reason"]
    assert report["gpu"]["compatible"] is False
    reasons = {r["op"]: r["reason"] for r in report["gpu"]["fallback_ops"]}
    assert reasons["FlexMatrixDeterminant"] == gpu.REASON_FLEX
    assert report["op_gpu"]["FlexMatrixDeterminant"] == {
        "cpu": 1, "reason": gpu.REASON_FLEX}
    assert report["op_gpu"]["MUL"] is None
    # the ADD after the Flex op is a second, smaller GPU partition
    assert report["gpu"]["partitions"] == 2
    after = [r for r in report["gpu"]["fallback_ops"] if r["op"] == "ADD"]
    assert [r["reason"] for r in after] == [gpu.REASON_PARTITION]
    assert report["signatures"] == {}
    text = format_text(report)
    flex_line = next(l for l in text.splitlines()
                     if l.strip().startswith("FlexMatrixDeterminant"))
    assert "NO: Flex" in flex_line
    verdicts = text.split("verdicts")[1]
    assert "TFLM (micro)  NO" in verdicts and "GPU delegate  NO" in verdicts
    with pytest.raises(RuntimeError, match="Flex op.s. FlexMatrixDet"):
        latency.measure(flex_model, threads=(1,), runs=1)


def test_foreign_model_with_control_flow_and_5d_tensors():
    """A graph this project would not make: WHILE (3 subgraphs), a 5-D
    tensor, int32 indices as a second input."""
    @tf.function(input_signature=[
        tf.TensorSpec([1, 4, 4, 2], tf.float32, name="x"),
        tf.TensorSpec([3], tf.int32, name="idx")])
    def fn(x, idx):
        y = tf.reduce_sum(tf.reshape(x, [1, 2, 2, 4, 2]) * 2.0, axis=1)
        g = tf.gather(tf.reshape(y, [-1]), idx)
        _, acc = tf.while_loop(lambda i, a: i < 3,
                               lambda i, a: (i + 1, a * 1.5),
                               [tf.constant(0), g])
        return {"out": acc, "img": tf.image.resize(x, [8, 8])}

    tflite = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], fn).convert()
    report = inspect(tflite)
    json.dumps(report)
    assert report["subgraphs"] == 3
    assert [i["dtype"] for i in report["inputs"]] == ["float32", "int32"]
    assert report["op_gpu"]["WHILE"]["reason"] == gpu.REASON_NO_KERNEL
    assert report["op_gpu"]["RESHAPE"]["cpu"] == 1  # of 2: only the 5-D one
    assert "5-D" in report["op_gpu"]["RESHAPE"]["reason"]
    assert report["op_gpu"]["RESIZE_BILINEAR"] is None
    assert "NO (1 of 2)" in format_text(report)
    timing = latency.measure(tflite, threads=(1,), runs=5, warmup=1)
    assert timing["threads"][1]["median_ms"] > 0


def test_gpu_verdict_per_mode(models):
    infos = {m: flatbuffer.read(b) for m, b in models.items()}
    assert gpu.check(infos["float16"])["compatible"]
    assert gpu.check(infos["float32"])["compatible"]
    int16 = gpu.cpu_fallback_ops(infos["int16x8"])
    assert len(int16) == len(infos["int16x8"].operators)
    assert all("int16" in r["reason"] for r in int16)
    assert gpu.cpu_fallback_ops(infos["int8"]) == []
    strict = gpu.cpu_fallback_ops(infos["int8"], allow_quantized=False)
    assert len(strict) == len(infos["int8"].operators)


def test_format_text_columns_are_aligned(models):
    text = format_text(inspect(models["int8"]))
    lines = text.split("\ntensors\n")[1].split("\n\n")[0].splitlines()
    header = lines[0]
    for column in ("name", "dtype", "shape", "quantization"):
        start = header.index(column)
        for line in lines[1:]:
            assert line[start - 2:start] == "  " and line[start] != " ", (
                column, line)
    assert len(lines) == 2 + len(flatbuffer.read(models["int8"]).tensors)


def test_invalid_bytes_name_the_problem():
    with pytest.raises(flatbuffer.InvalidModelError, match="TFL3"):
        inspect(b"not a model at all")


def test_latency_median_positive_and_below_p90(models):
    result = latency.measure(models["int8"], threads=(1, 2), runs=20,
                             warmup=2)
    assert set(result["threads"]) == {1, 2}
    for row in result["threads"].values():
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p90_ms"]


def test_latency_compare_side_by_side(models):
    subset = {m: models[m] for m in ("float32", "int8", "float16")}
    result = latency.compare(subset, threads=(1,), runs=10, warmup=1)
    assert list(result["models"]) == ["float32", "int8", "float16"]
    assert result["models"]["float32"]["threads"][1]["speedup"] == 1.0
    for name, row in result["models"].items():
        assert row["bytes"] == len(subset[name])
        assert row["threads"][1]["median_ms"] > 0
    for name in subset:
        assert name in result["text"]
    with pytest.raises(ValueError, match="threads"):
        latency.measure(models["int8"], threads=(0,))
