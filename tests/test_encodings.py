"""PRUNE / HUFFMAN / LUT encodings in the TFLM DECODE layouts, and the
flash/RAM planner: smaller, bit-identical in the pinned TFLM runtime."""

import numpy as np
import pytest

from converters.encodings import decode, huffman, lut, planner, prune
from converters.encodings.decode import EncodingError, Quant
from converters.runtimes import tflm
from converters.tflite import flatbuffer
from tfcompress.keras2.env import keras, tf


# --------------------------------------------------------------- layouts --

def test_prune_roundtrip_per_channel_zero_points_and_float_bits():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (8, 3, 3, 4)).astype(np.int8)
    zps = tuple(int(z) for z in rng.integers(-5, 5, 8))
    q = Quant(zps, 0, 8)
    w[rng.random(w.shape) < 0.75] = 0
    w[0] = zps[0]                       # a whole channel at its zero point
    enc = prune.encode(w, q)
    assert np.array_equal(prune.decode(enc, w.shape, w.dtype, q), w)
    # the zero points of the channel decide, not 0: channel 0 keeps nothing
    assert enc.detail["kept"] == int(np.sum(
        w.reshape(8, -1) != np.array(zps)[:, None]))
    w2 = rng.integers(-3, 3, (4, 5, 8)).astype(np.int8)
    last = Quant(zps, 2, 8)             # channels on the last axis
    assert np.array_equal(prune.decode(prune.encode(w2, last), w2.shape,
                                       np.int8, last), w2)
    f = np.array([0.0, -0.0, 1.5, 0.0], np.float32)
    ef = prune.encode(f)
    assert ef.detail["kept"] == 2       # -0.0 is not the zero bit pattern
    assert np.array_equal(prune.decode(ef, f.shape, f.dtype).view(np.int32),
                          f.view(np.int32))
    with pytest.raises(EncodingError, match="int8 only"):
        prune.encode(w2.astype(np.int16), Quant(zps, 2, 8))
    with pytest.raises(EncodingError, match="first or last"):
        prune.encode(w, Quant((1, 2, 3), 1, 3))


def test_huffman_reference_decoder_reads_the_kernels_test_vector():
    # decode_state_huffman_test.cc: 16-bit tables, first table 8 entries
    stream = bytes([0xF0, 0x0D, 0x79, 0xFC, 0x9C, 0x1A, 0x6E, 0x4C, 0x32,
                    0xAF, 0x29, 0xB3, 0x5D, 0xF6, 0x36, 0x02, 0x50, 0x15,
                    0x8C, 0xA7, 0x95, 0xDB, 0x29, 0x68, 0x3F, 0xBA, 0xB7,
                    0xED, 0xB1, 0x19, 0xE2, 0xE0])
    table = [0x986D, 0x9861, 0x986A, 0x0005, 0x0806, 0x0809, 0x000E, 0x000F,
             0x886F, 0x8868, 0x8864, 0x8864, 0x9069, 0x9066, 0x8863, 0x8863,
             0x0002, 0x906B, 0x8867, 0x886C, 0x8865, 0x8862, 0x8870, 0x886E]
    anc = decode.dcm(decode.DecodeType.HUFFMAN, bytes([1, 2 << 4])) + \
        np.asarray(table, "<u2").tobytes()
    want = "nmmacnanefdacopjomeckifookhbdbdmjjdmjgojfecpbiibmanbbjbnlgjafejp"
    got = huffman.decode(decode.Encoded("huffman", stream, anc), (64,), np.int8)
    assert bytes(got.view(np.uint8)).decode() == want


@pytest.mark.parametrize("case", ["sparse", "int16", "lone", "deep"])
def test_huffman_roundtrip(case):
    rng = np.random.default_rng(1)
    if case == "sparse":      # 75% zeros, 16 clusters: ~2 bits per value
        a = rng.choice(np.arange(-8, 8), (64, 48)).astype(np.int8)
        a[rng.random(a.shape) < 0.75] = 0
    elif case == "int16":
        a = rng.integers(-3000, 3000, (40, 9)).astype(np.int16)
    elif case == "lone":
        a = np.full((10, 3), -7, np.int8)
    else:                     # Fibonacci counts: code words up to 24 bits
        fib = [1, 1]
        while len(fib) < 25:
            fib.append(fib[-1] + fib[-2])
        a = np.repeat(np.arange(-12, 13), fib).astype(np.int8)
        rng.shuffle(a)
    enc = huffman.encode(a)
    assert np.array_equal(huffman.decode(enc, a.shape, a.dtype), a)
    assert len(enc.data) % 4 == 0 and enc.ancillary[:2] == bytes([1, 1])
    if case == "sparse":
        assert enc.detail["bits_per_value"] < 2.7
    if case in ("int16", "deep"):
        assert enc.detail["table_bits"] == (32 if case == "int16" else 16)


def test_refusals_name_the_reason():
    with pytest.raises(EncodingError, match="int8 and int16"):
        huffman.encode(np.zeros(8, np.int32))
    with pytest.raises(EncodingError, match="7"):
        lut.encode(np.arange(-100, 100, dtype=np.int8))


# ------------------------------------------------------ TFLM, end to end --

def _sparse_model(seed=3):
    """Dense 256 -> 48 (relu) -> 10: 75% of each kernel zero, the rest on
    16 values; int8, per-channel quantized kernels."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Input((256,)),
                              keras.layers.Dense(48, activation="relu",
                                                 name="fc1"),
                              keras.layers.Dense(10, name="fc2")])
    rng = np.random.default_rng(seed)
    centroids = np.linspace(-0.4, 0.4, 16).astype(np.float32)
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        kernel = centroids[rng.integers(0, 16, kernel.shape)]
        kernel[rng.random(kernel.shape) < 0.75] = 0.0
        layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    x = rng.normal(size=(64, 256)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(64))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    named = conv.convert()
    xq = rng.integers(-128, 128, (24, 256)).astype(np.int8)
    return flatbuffer.strip_strings(named), xq, planner.names_of(named), model


@pytest.fixture(scope="module")
def sparse():
    return _sparse_model()


def _int8_weights(tflite):
    return [c for c in decode.constants(tflite)
            if c.dtype == "INT8" and c.refusal is None]


@pytest.mark.parametrize("method", ["prune", "huffman", "lut"])
def test_encoded_model_is_smaller_and_bit_identical_in_tflm(sparse, method):
    tflite, xq, names, _ = sparse
    weights = _int8_weights(tflite)
    assert len(weights) == 2
    encs = {c.index: planner.ENCODERS[method](c) for c in weights}
    small = decode.apply(tflite, encs)
    ops = flatbuffer.read(small).op_names
    assert ops.count("TFLM_DECODE") == 2
    assert planner.prove(tflite, small, xq) == len(xq)  # raises on a change
    stored = sum(e.stored_bytes for e in encs.values())
    int8 = sum(c.nbytes for c in weights)
    assert len(small) < len(tflite) - (int8 - stored) + 1024
    if method == "prune":     # the must-show: 75% sparse -> < 40% of int8
        assert stored < 0.40 * int8
    if method == "huffman":
        assert stored < 0.30 * int8


def test_prove_catches_a_wrong_encoding(sparse):
    tflite, xq, names, _ = sparse
    c = _int8_weights(tflite)[-1]
    wrong = c.array.copy()
    wrong.flat[np.flatnonzero(wrong)[0]] += 1   # one weight off by one LSB
    small = decode.apply(tflite, {c.index: huffman.encode(wrong)})
    with pytest.raises(EncodingError, match="changes output"):
        planner.prove(tflite, small, xq)


def test_planner_cuts_flash_within_plain_arena_plus_2k(sparse, tmp_path):
    from converters.reporting import plots
    tflite, xq, names, _ = sparse
    plain_arena = tflm.find_arena(tflite)
    ram = plain_arena + tflm.arena_margin(plain_arena) + 2048
    p = planner.plan(tflite, xq, ram=ram, names=names)
    compacted = len(decode.apply(tflite, {}))
    assert p.fits and p.arena_recommended <= ram
    assert p.flash < compacted <= len(tflite)   # the encodings cut flash
    rows = {t.name: t for t in p.tensors}
    # fc1's decoded kernel (12 KB) does not fit in 2 KB more arena; fc2's does
    assert rows["fc1 weights"].encoding == "none"
    assert "exceeds" in rows["fc1 weights"].why
    assert rows["fc2 weights"].encoding in ("huffman", "prune", "lut")
    assert rows["fc2 weights"].decoded_ram == 480
    assert rows["fc2 weights"].bytes_after < rows["fc2 weights"].bytes_before
    assert {m["label"] for m in p.measured} >= {"plain", "all encoded"}
    assert plots.encoding_plans(p.to_dict(), str(tmp_path / "plans.png"))
    free = planner.plan(tflite, xq, names=names)               # no RAM limit
    assert {t.name for t in free.encoded} >= {"fc1 weights", "fc2 weights"}
    assert free.flash < p.flash and free.arena > p.arena


def test_planner_says_when_nothing_fits(sparse):
    tflite, xq, names, _ = sparse
    p = planner.plan(tflite, xq, ram=256, flash=100_000)
    assert not p.fits and p.tflite == tflite
    assert p.message.startswith("nothing fits") and "RAM" in p.message


@pytest.mark.slow
def test_micro_artifact_ships_the_planned_model_within_its_ram(sparse):
    from converters import convert
    tflite, _, _, model = sparse
    x = np.random.default_rng(7).normal(size=(48, 256)).astype(np.float32)
    art = convert(model, x, target="micro")
    plain_arena = tflm.find_arena(art.tflite)
    ram = plain_arena + tflm.arena_margin(plain_arena) + 2048
    art.device = {"ram": ram, "flash": 1 << 20}
    report = art.validate(x)
    assert report["validation"]["passed"]
    assert "TFLM_DECODE" in flatbuffer.read(art.tflite).op_names
    assert len(art.tflite) == report["tflite"]["bytes"] < \
        report["tflite"]["bytes_plain"] == len(art.plain_tflite)
    micro = report["validation"]["micro"]
    assert micro["arena_recommended"] <= ram and report["budget"]["fits_ram"]
    assert report["budget"]["flash"]["used"] == len(art.tflite)
    assert report["encodings"]["chosen"] != "all encoded"


def test_an_encoded_model_that_fails_tflm_validation_is_not_shipped(
        sparse, monkeypatch):
    """The plain int8 model ships, and the report says why, when the
    encoded candidate's TFLM outputs differ from the plain model's."""
    from converters import convert
    _, _, _, model = sparse
    x = np.random.default_rng(7).normal(size=(48, 256)).astype(np.float32)
    art = convert(model, x, target="micro")
    plain = art.tflite
    real = tflm.validate

    def failing_for_encoded(tflite, *args, **kwargs):
        result = real(tflite, *args, **kwargs)
        if bytes(tflite) != bytes(plain):   # the encoded candidate
            result["outputs"][0][3] += 1    # one sample changes
        return result
    monkeypatch.setattr(tflm, "validate", failing_for_encoded)
    report = art.validate(x)
    assert report["validation"]["passed"]
    assert art.tflite == plain
    assert "TFLM_DECODE" not in flatbuffer.read(art.tflite).op_names
    enc = report["encodings"]
    assert enc["encoded"] is False and enc["tensors"] == []
    assert enc["rejected_tensors"] and "rejected" in enc["message"]
    assert "{0: 1} of 48" in enc["message"] and enc["chosen"] == "plain"
    assert report["micro"]["encoding"] == "none"


def _transformer(seed=0, n=128):
    """Two Transformer blocks (MultiHeadAttention, LayerNormalization, a
    75%-sparse feed-forward pair) and ``n`` samples: TFLM's int8 outputs
    are up to 2 LSB from LiteRT's on ~10% of them."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 16), name="tokens")
    h = inp
    for _ in range(2):
        a = L.MultiHeadAttention(2, 8)(h, h)
        h = L.LayerNormalization()(L.Add()([h, a]))
        f = L.Dense(16)(L.Dense(64, activation="relu")(h))
        h = L.LayerNormalization()(L.Add()([h, f]))
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.Dense) and layer.units > 3:
            kernel, bias = layer.get_weights()
            kernel[rng.random(kernel.shape) < 0.75] = 0.0
            layer.set_weights([kernel, bias])
    return model, rng.normal(size=(n, 8, 16)).astype(np.float32)


def test_encoded_transformer_ships_with_the_plain_models_verdict():
    """A Transformer whose plain int8 model passes TFLM validation by its
    classification verdict (not by the 1-LSB rule) ships encoded: the
    encoded model's TFLM outputs are the plain model's, bit for bit, so
    its verdict is the plain model's."""
    from converters import convert
    model, x = _transformer()
    art = convert(model, x, target="micro")
    report = art.validate(x)
    micro = report["validation"]["micro"]
    assert micro["lsb_rule_passed"] is False   # the case at hand
    assert report["validation"]["passed"] and micro["passed"]
    assert report["encodings"].get("encoded") is not False, \
        report["encodings"]["message"]
    assert "TFLM_DECODE" in flatbuffer.read(art.tflite).op_names
    assert micro["identical"] and micro["differing"] == {}
    assert len(art.tflite) < len(art.plain_tflite)
    xq = np.random.default_rng(1).integers(-128, 128, (32, 8, 16))
    want, got = (tflm.run(m, xq.astype(np.int8), arena_size=1 << 22)[0]
                 for m in (art.plain_tflite, art.tflite))
    assert np.array_equal(want, got)
