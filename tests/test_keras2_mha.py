"""tf_keras MultiHeadAttention through prune -> strip -> cluster -> strip
-> quantize: its four projection kernels are pruned and clustered (tfmot's
registries name them inside the EinsumDense sublayers), the wrappers pass
``value`` on, and the stripped layer keeps its weight order."""

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress.keras2 import clustering, pruning, quantization
from tfcompress.keras2.env import keras

KERNELS = ("query/kernel", "key/kernel", "value/kernel",
           "attention_output/kernel")


def _model():
    """Causal cross-attention: ``value`` differs from ``query`` and a
    keyword argument is set, so a copy or wrapper that dropped either
    would change the outputs."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 16), name="tokens")
    context = L.Dense(16, name="context")(inp)
    a = L.MultiHeadAttention(2, 8, name="mha")(inp, context,
                                               use_causal_mask=True)
    h = L.LayerNormalization(name="ln")(L.Add(name="res")([inp, a]))
    out = L.Dense(3, name="label")(L.GlobalAveragePooling1D(name="pool")(h))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 16)).astype(np.float32)
    return model, x, rng.integers(0, 3, 64)


def _fit(model, x, y, epochs=1, callbacks=()):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0,
              callbacks=list(callbacks))


def _kernels(model):
    mha = model.get_layer("mha")
    return {w.name.split("/", 1)[1].split(":")[0]: w.numpy()
            for w in mha.weights if "kernel" in w.name}


@pytest.fixture(scope="module")
def pruned():
    model, x, y = _model()
    assert pruning.prunable_weight_count(model.get_layer("mha")) == 4 * 256
    wrapped = pruning.prune(model, 0.75, "constant")
    report = wrapped.compression_report
    assert "mha" in report.compressed, str(report)
    # not yet pruned (step 0): the wrapped model is the model, value included
    np.testing.assert_allclose(wrapped.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    _fit(wrapped, x, y, 2, tfc.callbacks_for(wrapped))
    stripped = tfc.strip(wrapped)
    np.testing.assert_allclose(stripped.predict(x, verbose=0),
                               wrapped.predict(x, verbose=0), atol=1e-5)
    return model, stripped, x, y, wrapped


def test_prune_reaches_the_attention_projection_kernels(pruned):
    _, stripped, _, _, _ = pruned
    kernels = _kernels(stripped)
    assert sorted(kernels) == sorted(KERNELS)
    for name, k in kernels.items():
        assert abs(np.mean(k == 0) - 0.75) < 0.02, name


def test_cluster_and_pcqat_keep_the_sparse_clustered_kernels(pruned):
    model, stripped, x, y, _ = pruned
    wrapped = clustering.cluster(stripped, 8, preserve_sparsity=True)
    assert "mha" in wrapped.compression_report.compressed
    assert type(wrapped.get_layer("cluster_mha")).__name__ == "ClusterWeightsMHA"
    _fit(wrapped, x, y)
    clustered = tfc.strip(wrapped)
    np.testing.assert_allclose(clustered.predict(x, verbose=0),
                               wrapped.predict(x, verbose=0), atol=1e-5)
    # the weights in the order a fresh layer expects (kernel, bias, ...)
    assert [w.shape for w in clustered.get_layer("mha").get_weights()] == \
        [w.shape for w in model.get_layer("mha").get_weights()]
    for name, k in _kernels(clustered).items():
        assert len(np.unique(k)) <= 8, name
        assert abs(np.mean(k == 0) - 0.75) < 0.02, name
    qat = quantization.quantize(clustered, preserve=("sparsity", "clusters"))
    assert qat.qat_scheme == "PCQAT"
    reason = qat.compression_report.skipped["mha"]
    assert "frozen" in reason
    _fit(qat, x, y)
    kernels = {w.name: w.numpy() for w in qat.get_layer("mha").weights
               if "kernel" in w.name}
    assert len(kernels) == 4
    for name, k in kernels.items():
        assert len(np.unique(k)) <= 8 and np.mean(k == 0) >= 0.73, name


def test_wrapped_mha_logs_its_own_sparsity_and_reloads(pruned, tmp_path):
    """Each projection kernel is read through its own mask (four masks of
    one shape: a union of them would log more zeros than there are); the
    wrapped model saves (masks numbered) and reloads in the scope, its
    EinsumDense projections rebuilt before the wrapper reads them."""
    from tfcompress.analysis import stats
    _, _, x, _, wrapped = pruned
    rows = [r for r in stats.kernel_stats(wrapped) if r.layer == "mha"]
    assert len(rows) == 4
    assert all(abs(r.sparsity - 0.75) < 0.02 for r in rows), rows
    want = wrapped.predict(x, verbose=0)

    def steps(m):
        return [int(w.numpy()) for w in m.weights if "pruning_step" in w.name]
    assert set(steps(wrapped)) == {8}   # 2 epochs of 4 batches
    for path, kwargs in ((tmp_path / "w.keras", {}),
                         (tmp_path / "w.h5", {"include_optimizer": False})):
        wrapped.save(str(path), **kwargs)
        with tfc.scope():
            again = keras.models.load_model(str(path))
        np.testing.assert_allclose(again.predict(x, verbose=0), want,
                                   atol=1e-5)
        assert steps(again) == steps(wrapped), path
