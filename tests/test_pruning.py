import numpy as np
import pytest

import tfcompress as tfc
from converters import convert
from converters.tflite import flatbuffer
from tfcompress import keras
from tfcompress.keras2 import schedules
from tfcompress.analysis import stats
from tfcompress.keras2.pruning import PruneWrapper
from conftest import compile_clf, small_cnn


def _layer_model(kind):
    keras.utils.set_random_seed(0)
    if kind == "Conv1D":
        inp = keras.Input((16, 4))
        h = keras.layers.Conv1D(16, 3, name="target")(inp)
        h = keras.layers.Flatten()(h)
        shape = (16, 4)
    elif kind == "Conv2D":
        inp = keras.Input((8, 8, 2))
        h = keras.layers.Conv2D(16, 3, name="target")(inp)
        h = keras.layers.Flatten()(h)
        shape = (8, 8, 2)
    elif kind == "Dense":
        inp = keras.Input((32,))
        h = keras.layers.Dense(64, name="target")(inp)
        shape = (32,)
    elif kind == "Embedding":
        inp = keras.Input((6,), dtype="int32")
        h = keras.layers.Embedding(50, 16, name="target")(inp)
        h = keras.layers.Flatten()(h)
        shape = None
    out = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inp, out), shape


def _data(kind, shape, rng, n=128):
    if kind == "Embedding":
        x = rng.integers(0, 50, size=(n, 6)).astype(np.int32)
    else:
        x = rng.normal(size=(n, *shape)).astype(np.float32)
    return x, rng.integers(0, 3, n)


@pytest.mark.parametrize("kind", ["Conv1D", "Conv2D", "Dense", "Embedding"])
@pytest.mark.parametrize("schedule", ["polynomial", "constant"])
def test_stripped_kernel_reaches_target_sparsity(kind, schedule, rng):
    model, shape = _layer_model(kind)
    x, y = _data(kind, shape, rng)
    pruned = tfc.prune(model, 0.6, schedule)
    assert "target" in pruned.compression_report.compressed
    compile_clf(pruned)
    pruned.fit(x, y, epochs=2, batch_size=16, verbose=0,
               callbacks=tfc.callbacks_for(pruned))
    stripped = tfc.strip(pruned)
    assert not any(isinstance(l, PruneWrapper) for l in stripped.layers)
    kernel = stripped.get_layer("target").get_weights()[0]
    assert abs(np.mean(kernel == 0) - 0.6) <= 0.01
    if kind != "Embedding":  # int32 ids: no int8 input tensor to convert
        art = convert(stripped, x[:32], target="android")
        rows = [r for r in flatbuffer.weight_stats(art.info)
                if r["layer"] == "target"]
        assert len(rows) == 1 and rows[0]["dtype"] == "int8"
        assert rows[0]["sparsity"] >= 0.59


def test_two_of_four_structured_sparsity(rng):
    model, shape = _layer_model("Dense")
    x, y = _data("Dense", shape, rng)
    pruned = tfc.prune(model, 0.5, "constant", m_by_n=(2, 4))
    compile_clf(pruned)
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0,
               callbacks=tfc.callbacks_for(pruned))
    kernel = tfc.strip(pruned).get_layer("target").get_weights()[0]
    # 2:4 along the input-channel axis: every block of 4 has >= 2 zeros
    blocks = kernel.T.reshape(kernel.shape[1], -1, 4)
    assert np.all(np.sum(blocks == 0, axis=-1) >= 2)


def test_per_layer_targets_and_skip(clf_data):
    x, y = clf_data
    pruned = tfc.prune(small_cnn(), 0.5, per_layer={"fc": 0.8},
                       skip=["logits"])
    report = pruned.compression_report
    assert report.skipped["logits"] == "skipped by user"
    assert report.skipped["flat"] == "no weights"
    compile_clf(pruned)
    pruned.fit(x, y, epochs=2, batch_size=32, verbose=0,
               callbacks=tfc.callbacks_for(pruned))
    rows = {r.layer: r for r in stats.kernel_stats(tfc.strip(pruned))}
    assert abs(rows["fc"].sparsity - 0.8) <= 0.01
    assert abs(rows["conv"].sparsity - 0.5) <= 0.01
    assert rows["logits"].sparsity < 0.05


def test_skip_by_type_and_regex():
    pruned = tfc.prune(small_cnn(), 0.5, skip=["Conv2D", "re:log.*"])
    assert pruned.compression_report.compressed == ["fc"]


def test_unknown_per_layer_name_is_an_error():
    with pytest.raises(ValueError, match="nope"):
        tfc.prune(small_cnn(), 0.5, per_layer={"nope": 0.2})


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(4)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="subclassed.*Sequential or Functional"):
        tfc.prune(net, 0.5)


def test_sparsity_is_logged_into_history(clf_data):
    x, y = clf_data
    pruned = compile_clf(tfc.prune(small_cnn(), 0.7))
    hist = pruned.fit(x, y, epochs=3, batch_size=32, verbose=0,
                      callbacks=tfc.callbacks_for(pruned, per_layer=True))
    assert hist.history["sparsity"][-1] == pytest.approx(0.7, abs=0.01)
    assert hist.history["sparsity"][0] < hist.history["sparsity"][-1]
    assert "sparsity/fc" in hist.history


@pytest.mark.parametrize("cls,kwargs", [
    (schedules.PolynomialSparsity, {"target_sparsity": 0.8, "end_step": 100,
                                    "frequency": 5, "power": 2}),
    (schedules.PolynomialSparsity, {"target_sparsity": 0.5}),
    (schedules.ConstantSparsity, {"target_sparsity": 0.3, "begin_step": 4}),
])
def test_schedule_config_round_trip(cls, kwargs):
    sched = cls(**kwargs)
    config = sched.get_config()
    again = schedules.get(config)
    assert type(again) is cls
    assert again.get_config() == config


def test_wrapper_config_round_trip_keeps_m_by_n():
    layer = keras.layers.Dense(8)
    layer.build((None, 8))
    wrapper = PruneWrapper(layer, schedules.ConstantSparsity(0.5),
                           sparsity_m_by_n=(2, 4))
    config = wrapper.get_config()
    assert config["sparsity_m_by_n"] == (2, 4)
    with tfc.scope():
        again = PruneWrapper.from_config(config)
    again_config = again.get_config()
    # the inner layer's serialization may add build info; its config is equal
    assert again_config.pop("layer")["config"] == config.pop("layer")["config"]
    assert again_config == config


def test_schedule_registry_errors_list_valid_names():
    with pytest.raises(ValueError, match="constant.*polynomial"):
        schedules.get("cubic", target_sparsity=0.5)


def test_saved_mid_training_model_resumes_pruning_step(clf_data, tmp_path):
    x, y = clf_data
    pruned = compile_clf(tfc.prune(small_cnn(), 0.8, end_step=24, frequency=2))
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0,
               callbacks=tfc.callbacks_for(pruned))
    step = int(keras.backend.get_value(pruned.get_layer("prune_wrapper_fc").pruning_step))
    assert step == 8
    path = str(tmp_path / "mid.keras")
    pruned.save(path)
    with tfc.scope():
        loaded = keras.models.load_model(path)
    assert int(keras.backend.get_value(
        loaded.get_layer("prune_wrapper_fc").pruning_step)) == step
    mid = stats.summary(tfc.strip(loaded))["sparsity"]
    assert mid < 0.8
    loaded.fit(x, y, epochs=2, batch_size=32, verbose=0,
               callbacks=tfc.callbacks_for(loaded))
    assert int(keras.backend.get_value(
        loaded.get_layer("prune_wrapper_fc").pruning_step)) == 24
    assert stats.summary(tfc.strip(loaded))["sparsity"] == pytest.approx(
        0.8, abs=0.01)
