import numpy as np
import pytest

import tfcompress as tfc
from tfcompress import keras
from tfcompress.analysis import stats
from conftest import compile_clf, small_cnn


def _trained(clf_data, epochs=1):
    x, y = clf_data
    model = compile_clf(small_cnn())
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density"])
@pytest.mark.parametrize("clusters", [4, 16])
def test_clustered_kernels_hold_at_most_n_unique_values(clf_data, init,
                                                        clusters):
    x, y = clf_data
    clustered = compile_clf(tfc.cluster(_trained(clf_data), clusters, init))
    clustered.fit(x, y, epochs=1, batch_size=32, verbose=0,
                  callbacks=tfc.callbacks_for(clustered))
    rows = stats.kernel_stats(tfc.strip(clustered))
    assert {r.layer for r in rows} == {"conv", "fc", "logits"}
    for r in rows:
        assert 2 <= r.unique <= clusters, r


def test_per_channel_clustering_bounds_each_channel(clf_data):
    x, y = clf_data
    clustered = compile_clf(tfc.cluster(_trained(clf_data), 4,
                                        per_channel=True))
    clustered.fit(x, y, epochs=1, batch_size=32, verbose=0)
    kernel = tfc.strip(clustered).get_layer("conv").get_weights()[0]
    per_channel = [len(np.unique(kernel[..., c]))
                   for c in range(kernel.shape[-1])]
    assert max(per_channel) <= 4
    # channels have their own centroids: more than 4 values overall
    assert len(np.unique(kernel)) > 4


def test_sparsity_preserving_clustering_keeps_zeros(clf_data):
    x, y = clf_data
    pruned = compile_clf(tfc.prune(_trained(clf_data), 0.6, "constant"))
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0,
               callbacks=tfc.callbacks_for(pruned))
    stripped = tfc.strip(pruned)
    zeros_before = stripped.get_layer("fc").get_weights()[0] == 0
    clustered = compile_clf(tfc.cluster(stripped, 8, preserve_sparsity=True))
    clustered.fit(x, y, epochs=2, batch_size=32, verbose=0)
    kernel = tfc.strip(clustered).get_layer("fc").get_weights()[0]
    assert np.all(kernel[zeros_before] == 0)
    assert np.mean(kernel == 0) == pytest.approx(0.6, abs=0.01)
    assert len(np.unique(kernel)) <= 8


def test_too_small_and_unsupported_layers_are_reported(clf_data):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = keras.layers.Dense(2, name="tiny")(inp)          # 16 weights
    h = keras.layers.LayerNormalization(name="norm")(h)
    h = keras.layers.Dense(64, name="big")(h)
    model = keras.Model(inp, h)
    clustered = tfc.cluster(model, 16)
    report = clustered.compression_report
    assert report.compressed == ["big"]
    assert report.skipped["tiny"] == "too few weights"
    assert "norm" in report.skipped


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="clusters should be an int"):
        tfc.cluster(small_cnn(), 1)
    with pytest.raises(ValueError, match="valid names"):
        tfc.cluster(small_cnn(), 8, init="spectral")


@pytest.mark.parametrize("per_channel", [False, True])
def test_assignment_by_search_matches_tfmots_argmin(per_channel):
    """The wrapper's nearest-centroid search gives tfmot's own pulling
    indices (the first of equal centroids included)."""
    from tensorflow_model_optimization.python.core.clustering.keras import (
        clustering_algorithm as ca)
    from tfcompress.keras2 import clustering
    from tfcompress.keras2.env import tf
    rng = np.random.default_rng(0)
    weight = tf.constant(rng.normal(size=(3, 3, 16, 32)).astype(np.float32))
    cents = rng.normal(size=(32, 8) if per_channel else (16,))
    cents[..., 5] = cents[..., 2]
    base = ca.ClusteringAlgorithmPerChannel if per_channel \
        else ca.ClusteringAlgorithm
    args = (tf.Variable(cents.astype(np.float32)), ca.GradientAggregation.AVG,
            "channels_last")
    expect = base(*args).get_pulling_indices(weight).numpy()
    got = clustering._SEARCHING[base](*args).get_pulling_indices(weight)
    np.testing.assert_array_equal(got.numpy(), expect)


@pytest.mark.slow
def test_recurrent_layer_clusters_its_cell_kernels():
    """An LSTM goes through tfmot's RNN clustering wrapper (its kernels
    live in the cell), and strips to a plain LSTM with clustered kernels."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 4))
    out = keras.layers.Dense(3)(keras.layers.LSTM(16, name="lstm")(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 4)).astype(np.float32), \
        rng.integers(0, 3, 32)
    wrapped = tfc.cluster(model, 8)
    assert "lstm" in wrapped.compression_report.compressed
    compile_clf(wrapped).fit(x, y, epochs=1, verbose=0)
    plain = tfc.strip(wrapped)
    np.testing.assert_allclose(plain.predict(x, verbose=0),
                               wrapped.predict(x, verbose=0), atol=1e-5)
    lstm = plain.get_layer("lstm")
    assert type(lstm) is keras.layers.LSTM
    for w in lstm.cell.weights:
        if "kernel" in w.name:
            assert len(np.unique(w.numpy())) <= 8, w.name


@pytest.mark.parametrize("per_channel", [False, True])
def test_clustered_kernel_and_gradients_are_tfmots(per_channel):
    """The wrapper's lookup gives tfmot's clustered kernel and tfmot's
    gradients (straight-through to the kernel, summed per centroid), the
    centroid gradient dense instead of one sparse slice per weight."""
    from tensorflow_model_optimization.python.core.clustering.keras import (
        clustering_algorithm as ca)
    from tfcompress.keras2 import clustering
    from tfcompress.keras2.env import tf
    rng = np.random.default_rng(1)
    weight = tf.Variable(rng.normal(size=(3, 3, 8, 16)).astype(np.float32))
    cents = rng.normal(size=(16, 6) if per_channel else (12,))
    upstream = tf.constant(rng.normal(size=(3, 3, 8, 16)).astype(np.float32))
    base = ca.ClusteringAlgorithmPerChannel if per_channel \
        else ca.ClusteringAlgorithm
    got = []
    for cls in (base, clustering._SEARCHING[base]):
        var = tf.Variable(cents.astype(np.float32))
        algo = cls(var, ca.GradientAggregation.SUM, "channels_last")
        with tf.GradientTape() as tape:
            kernel = algo.get_clustered_weight(
                algo.get_pulling_indices(weight), weight)
            loss = tf.reduce_sum(kernel * upstream)
        d_cents, d_weight = tape.gradient(loss, [var, weight])
        got.append((kernel.numpy(), tf.convert_to_tensor(d_cents).numpy(),
                    d_weight.numpy(), isinstance(d_cents, tf.Tensor)))
    (k0, c0, w0, _), (k1, c1, w1, dense) = got
    np.testing.assert_array_equal(k1, k0)
    np.testing.assert_allclose(c1, c0, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(w1, w0)
    assert dense and np.abs(c1).sum() > 0
