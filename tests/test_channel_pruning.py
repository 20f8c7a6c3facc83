"""Channel pruning: the shrunk model equals the masked original, groups
through residual Add / Concatenate / Flatten, criteria, MACs, int8."""

import json

import numpy as np
import pytest

from sample_models import mobilenet_style
from tfcompress.keras2 import channel_pruning as cp
from tfcompress.keras2.env import keras

BLOCKS = ((16, 1), (32, 2), (32, 1), (32, 1))


def small_mobilenet(seed=0):
    return mobilenet_style.build_model((32, 32, 3), 10, stem=16, blocks=BLOCKS,
                                       seed=seed, random_bn=True)


def images(n=8, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def predict(model, x):
    return model(x, training=False).numpy()


@pytest.fixture(scope="module")
def mobilenet():
    return small_mobilenet()


def test_ratio_zero_reproduces_outputs(mobilenet):
    x = images()
    small, rep = cp.prune_channels(mobilenet, ratio=0.0)
    np.testing.assert_allclose(predict(small, x), predict(mobilenet, x),
                               atol=1e-6)
    assert rep.params_after == rep.params_before == mobilenet.count_params()
    assert all(g["kept"] == g["channels"] for g in rep.groups)


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor"])
def test_shrunk_equals_masked_original(mobilenet, criterion):
    x = images()
    y = np.arange(len(x)) % 10
    mobilenet.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    plan = cp.plan_channels(mobilenet, 0.5, criterion, data=(x, y))
    small = cp.apply_plan(mobilenet, plan)
    masked = cp.mask_plan(mobilenet, plan)
    out_small, out_masked = predict(small, x), predict(masked, x)
    np.testing.assert_allclose(out_small, out_masked, atol=1e-5)
    # pruning changed the function (the test is not comparing identities)
    assert np.abs(out_masked - predict(mobilenet, x)).max() > 1e-3
    assert small.count_params() < 0.5 * mobilenet.count_params()


def test_residual_group_pruned_jointly_by_summed_criterion(mobilenet):
    small, rep = cp.prune_channels(mobilenet, 0.5, "l1")
    groups = {tuple(g["layers"]): g for g in rep.groups}
    # stem feeds add0 (with pw0); pw1 feeds add2 (with pw2), add3 (with pw3)
    assert groups[("stem", "pw0")]["kept"] == 8
    assert groups[("pw1", "pw2", "pw3")]["kept"] == 16
    assert groups[("logits",)]["kept"] == 10
    assert groups[("logits",)]["reason"] == cp.SKIP_OUTPUT
    for name in ("pw1", "pw2", "pw3"):
        assert small.get_layer(name).filters == 16
    # kept channels: the top half of the summed per-filter L1 norms of the
    # group's filters: pw1..pw3 and the depthwise layers reading them
    score = sum(np.abs(mobilenet.get_layer(n).kernel.numpy()).sum((0, 1, 2))
                for n in ("pw1", "pw2", "pw3"))
    score += sum(np.abs(mobilenet.get_layer(n).depthwise_kernel.numpy()).sum(
        (0, 1, 3)) for n in ("dw2", "dw3"))
    expected = np.sort(np.argsort(-score)[:16])
    kept_bn = small.get_layer("pw2_bn").moving_mean.numpy()
    np.testing.assert_array_equal(
        kept_bn, mobilenet.get_layer("pw2_bn").moving_mean.numpy()[expected])
    assert rep.macs_after < 0.4 * rep.macs_before


def test_sequential_flatten_dense():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="logits")])
    mobilenet_style.randomize_batchnorm(model)
    x = images(16, (8, 8, 1))
    plan = cp.plan_channels(model, 0.5, "l2")
    small = cp.apply_plan(model, plan)
    assert isinstance(small, keras.Sequential)
    assert small.get_layer("conv").filters == 4
    assert small.get_layer("fc").units == 8
    assert small.get_layer("fc").kernel.shape == (3 * 3 * 4, 8)
    np.testing.assert_allclose(predict(small, x),
                               predict(cp.mask_plan(model, plan), x), atol=1e-5)


def test_concatenate_and_barrier():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(6, 1, activation="relu", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(inp)
    c = keras.layers.Concatenate(name="cat")([a, b])
    d = keras.layers.Conv2D(8, 1, name="d")(c)
    r = keras.layers.Reshape((8 * 8 * 8,), name="reshape")(d)
    out = keras.layers.Dense(3, name="logits")(r)
    model = keras.Model(inp, out)
    x = images(8, (8, 8, 3))
    small, rep = cp.prune_channels(model, 0.5)
    groups = {tuple(g["layers"]): g for g in rep.groups}
    assert (groups[("a",)]["kept"], groups[("b",)]["kept"]) == (3, 2)
    assert groups[("d",)]["kept"] == 8
    assert "reshape" in groups[("d",)]["reason"]
    assert small.get_layer("d").kernel.shape == (1, 1, 5, 8)
    plan = cp.plan_channels(model, 0.5)
    np.testing.assert_allclose(predict(small, x),
                               predict(cp.mask_plan(model, plan), x), atol=1e-5)
    assert rep.layers.skipped["d"] == groups[("d",)]["reason"]


def test_add_with_model_input_keeps_channels():
    inp = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    h = keras.layers.Add(name="add")([inp, a])
    h = keras.layers.Conv2D(6, 1, name="b")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="logits")(h))
    small, rep = cp.prune_channels(model, 0.5)
    groups = {tuple(g["layers"]): g for g in rep.groups}
    assert groups[("a",)]["kept"] == 4
    assert groups[("a",)]["reason"] == cp.SKIP_INPUT
    assert small.get_layer("b").filters == 3


def test_skip_keeps_the_whole_group(mobilenet):
    small, rep = cp.prune_channels(mobilenet, 0.5, skip=["pw2"])
    groups = {tuple(g["layers"]): g for g in rep.groups}
    assert groups[("pw1", "pw2", "pw3")]["kept"] == 32
    assert groups[("pw1", "pw2", "pw3")]["reason"] == "skipped by user"
    assert small.get_layer("pw3").filters == 32
    assert small.get_layer("stem").filters == 8
    json.dumps(rep.to_dict())


def test_multiple_of_rounds_up(mobilenet):
    _, rep = cp.prune_channels(mobilenet, 0.7, multiple_of=8)
    kept = {tuple(g["layers"]): g["kept"] for g in rep.groups}
    assert kept[("stem", "pw0")] == 8 and kept[("pw1", "pw2", "pw3")] == 16


def test_taylor_uses_gradients_not_magnitude():
    """A large unit that the output ignores has zero Taylor score."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    h = keras.layers.Dense(4, name="hidden")(inp)
    out = keras.layers.Dense(1, name="out")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 4)).astype(np.float32)
    kernel[:, 0] *= 100.0                                # largest by L1
    model.get_layer("hidden").set_weights([kernel, np.zeros(4, np.float32)])
    model.get_layer("out").set_weights([np.array([[0.0], [1], [1], [1]],
                                                 np.float32), np.zeros(1)])
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    l1 = cp.plan_channels(model, 0.25, "l1")
    taylor = cp.plan_channels(model, 0.25, "taylor", data=(x, y), loss="mse")
    (root,) = taylor.keep
    assert 0 in l1.keep[root]
    assert 0 not in taylor.keep[root]
    assert taylor.scores[root][0] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"ratio": 1.0}, "ratio"),
    ({"criterion": "l0"}, "criterion"),
    ({"criterion": "taylor"}, "data"),
])
def test_bad_arguments(mobilenet, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cp.prune_channels(mobilenet, **kwargs)


def test_count_macs_by_hand():
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same")(inp)            # 8*8*4*27
    h = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(h)  # 4*4*4*9
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(10)(h)                                # 4*10
    assert cp.count_macs(keras.Model(inp, out)) == 6912 + 576 + 40


def test_pruned_int8_tflite_runs_in_litert(mobilenet):
    from converters.runtimes import litert
    from converters.conversion.modes import convert_bytes
    small, _ = cp.prune_channels(mobilenet, 0.5)
    x = np.random.default_rng(0).uniform(0, 1, (32, 32, 32, 3)).astype(
        np.float32)
    big_b = convert_bytes(mobilenet, x, mode="int8")
    small_b = convert_bytes(small, x, mode="int8")
    assert len(small_b) < len(big_b)
    got = litert.run(small_b, x[:8]).outputs
    want = predict(small, x[:8])
    assert got.shape == want.shape
    # int8 error of an untrained random network: a few % of the range
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max() + 1e-3


def test_recipe_stage_channel_prune(mobilenet):
    from tfcompress.pipeline.stages import compress
    x = images(32)
    y = np.arange(32) % 10
    recipe = {"stages": [{"channel_prune": {"ratio": 0.5, "epochs": 1}}],
              "fit": {"loss": "sparse_categorical_crossentropy",
                      "from_logits": True, "verbose": 0, "batch_size": 16}}
    result = compress(mobilenet, (x, y), None, recipe)
    assert result.model.get_layer("pw1").filters == 16
    assert result.model.count_params() < 0.5 * mobilenet.count_params()
    assert len(result.history[0]["history"]["loss"]) == 1
    assert any(e["technique"] == cp.TECHNIQUE and e["status"] == "compressed"
               for e in result.report)
