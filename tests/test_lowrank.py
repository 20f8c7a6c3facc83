"""Low-rank factorization of Dense / 1x1 Conv2D kernels by SVD."""

import json

import numpy as np
import pytest

from sample_models import mobilenet_style
from tfcompress.keras2 import lowrank
from tfcompress.keras2.env import keras


def mlp(sequential=False, hidden=48):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(hidden, activation="relu", name="fc"),
              keras.layers.Dense(5, name="logits")]
    if sequential:
        return keras.Sequential([keras.Input((64,))] + layers)
    inp = keras.Input((64,), name="x")
    h = inp
    for layer in layers:
        h = layer(h)
    return keras.Model(inp, h)


def data(n=32, shape=(64,), seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(
        np.float32)


def predict(model, x):
    return model(x, training=False).numpy()


@pytest.mark.parametrize("sequential", [False, True])
def test_full_rank_reproduces_outputs(sequential):
    model, x = mlp(sequential), data()
    new, rep = lowrank.factorize(model, rank=10_000, only_if_smaller=False)
    assert isinstance(new, keras.Sequential) == sequential
    assert [e["rank"] for e in rep.layers] == [48, 5]
    assert new.get_layer("fc_lowrank").units == 48
    np.testing.assert_allclose(predict(new, x), predict(model, x), atol=1e-4)


def test_full_rank_1x1_conv_reproduces_outputs():
    model = mobilenet_style.build_model((16, 16, 3), 10, stem=8,
                                        blocks=((8, 1), (16, 2)),
                                        random_bn=True)
    x = data(4, (16, 16, 3))
    new, rep = lowrank.factorize(model, energy=1.0, only_if_smaller=False)
    done = {e["name"] for e in rep.layers if e["status"] == "compressed"}
    assert done == {"pw0", "pw1", "logits"}
    assert new.get_layer("pw1_lowrank").kernel.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(predict(new, x), predict(model, x), atol=1e-4)


def test_energy_picks_rank_of_low_rank_kernel_and_params_drop():
    model, x = mlp(), data()
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(64, 6)) @ rng.normal(size=(6, 48))
    kernel += 1e-4 * rng.normal(size=kernel.shape)
    fc = model.get_layer("fc")
    fc.set_weights([kernel.astype(np.float32), fc.get_weights()[1]])
    new, rep = lowrank.factorize(model, energy=0.999, skip=["logits"])
    (entry,) = [e for e in rep.layers if e["name"] == "fc"]
    assert entry["rank"] == 6 and entry["status"] == "compressed"
    assert entry["energy"] >= 0.999
    assert rep.params_after == model.count_params() - 64 * 48 + 6 * (64 + 48)
    assert new.count_params() == rep.params_after
    np.testing.assert_allclose(predict(new, x), predict(model, x),
                               atol=1e-2, rtol=1e-3)
    json.dumps(rep.to_dict())


def test_choose_rank():
    s = np.array([3.0, 1.0, 0.1])      # energies 9, 1, 0.01 of 10.01
    assert lowrank.choose_rank(s, 0.5) == 1
    assert lowrank.choose_rank(s, 0.95) == 2
    assert lowrank.choose_rank(s, 1.0) == 3
    with pytest.raises(ValueError, match="energy"):
        lowrank.choose_rank(s, 0.0)


def test_only_where_it_saves_params():
    model = mlp()
    new, rep = lowrank.factorize(model, rank=40)   # 40*(64+48) > 64*48
    assert all(e["status"] == "skipped" for e in rep.layers)
    assert rep.layers[0]["reason"] == lowrank.SKIP_NO_SAVING
    assert new.count_params() == model.count_params()


def test_needs_exactly_one_of_rank_energy():
    with pytest.raises(ValueError, match="exactly one"):
        lowrank.factorize(mlp(), rank=4, energy=0.9)
    with pytest.raises(ValueError, match="exactly one"):
        lowrank.factorize(mlp())


def test_accuracy_reported_and_recipe_stage(digits_data):
    from sample_models import digits
    from tfcompress.pipeline.stages import compress
    (x, y), (xt, yt) = digits_data
    model = digits.build_model()
    digits.compile_model(model)
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    new, rep = lowrank.factorize(model, energy=0.9, eval_data=(xt, yt))
    assert rep.params_after < rep.params_before
    assert rep.accuracy_before > 0.8
    assert 0.0 <= rep.accuracy_after <= 1.0
    recipe = {"stages": [{"low_rank": {"energy": 0.9, "epochs": 1}}],
              "fit": {"loss": "sparse_categorical_crossentropy",
                      "from_logits": True, "verbose": 0}}
    result = compress(model, (x, y), (xt, yt), recipe)
    assert result.model.count_params() == rep.params_after
    assert result.history[0]["history"]["val_accuracy"][0] > 0.7
