import pytest

import tfcompress as tfc
from converters import convert
from converters.tflite import flatbuffer
from tfcompress import keras
from conftest import compile_clf, small_cnn


def _fit(model, data, epochs=1, callbacks=None):
    x, y = data
    compile_clf(model)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0,
              callbacks=callbacks or tfc.callbacks_for(model))
    return model


@pytest.mark.parametrize("functional", [True, False])
def test_qat_model_converts_with_int8_weights_and_activations(clf_data,
                                                              functional):
    x, y = clf_data
    qat = _fit(tfc.quantize(_fit(small_cnn(functional=functional), clf_data)),
               clf_data)
    assert qat.qat_scheme == "QAT"
    art = convert(qat, x[:64], target="android")
    info = art.info
    assert flatbuffer.float_ops(info) == []
    assert {t.dtype for t in info.input_details + info.output_details} == \
        {"INT8"}
    kernels = [info.tensors[op.inputs[1]] for op in info.operators
               if op.name in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(kernels) == 3 and {k.dtype for k in kernels} == {"INT8"}
    report = art.validate(x, y)
    assert report["validation"]["litert"]["agreement"] >= 0.98


def test_qat_keeps_layer_names():
    qat = tfc.quantize(small_cnn())
    names = [l.name for l in qat.layers]
    assert {"conv", "fc", "logits"} <= set(names)


@pytest.mark.parametrize("stages,scheme", [
    (("prune",), "PQAT"), (("cluster",), "CQAT"),
    (("prune", "cluster"), "PCQAT")])
def test_collaborative_qat_preserves_sparsity_and_clusters(clf_data, stages,
                                                           scheme):
    x, y = clf_data
    model = _fit(small_cnn(), clf_data)
    if "prune" in stages:
        model = tfc.strip(_fit(tfc.prune(model, 0.6, "constant"), clf_data))
    if "cluster" in stages:
        model = tfc.strip(_fit(tfc.cluster(
            model, 8, preserve_sparsity="prune" in stages), clf_data))
    qat = tfc.quantize(model)
    assert qat.qat_scheme == scheme
    _fit(qat, clf_data)
    art = convert(qat, x[:64], target="android")
    rows = {r["layer"]: r for r in flatbuffer.weight_stats(art.info)}
    fc = rows["fc"]
    assert fc["dtype"] == "int8"
    if "prune" in stages:
        assert fc["sparsity"] >= 0.59
    if "cluster" in stages:
        assert fc["unique"] <= 8


def test_selective_qat_annotates_only_named_layers():
    qat = tfc.quantize(small_cnn(), layers=["fc"])
    report = qat.compression_report
    assert report.compressed == ["fc"]
    assert report.skipped["conv"] == "skipped by user"


def test_nested_subclassed_model_is_refused_with_advice():
    class Block(keras.Model):
        def __init__(self):
            super().__init__(name="block")
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return self.dense(x)

    inp = keras.Input((8,))
    outer = keras.Model(inp, Block()(inp))
    with pytest.raises(ValueError, match="'block' is subclassed.*Functional"):
        tfc.quantize(outer)


def test_unknown_preserve_is_an_error():
    with pytest.raises(ValueError, match="unknown preserve"):
        tfc.quantize(small_cnn(), preserve=("zeros",))
