"""compress(): stages in order, checkpoints that resume, QAT included."""

import numpy as np
import pytest

from tfcompress.pipeline.stages import STAGE_KINDS, compress
from tfcompress.pipeline.recipe import STAGES
from conftest import classification_data, compile_clf, small_cnn

RECIPE = {"stages": [{"prune": {"target_sparsity": 0.5, "epochs": 1}},
                     {"quantize": {"epochs": 1}}],
          "fit": {"verbose": 0, "loss": "sparse_categorical_crossentropy",
                  "from_logits": True}}


def test_every_recipe_stage_has_a_runner():
    assert set(STAGES) == set(STAGE_KINDS)


def test_finished_stages_resume_from_checkpoints_qat_included(tmp_path):
    x, y = classification_data(np.random.default_rng(0), n=128)
    model = compile_clf(small_cnn())
    first = compress(model, (x, y), None, RECIPE,
                     checkpoint_dir=str(tmp_path))
    assert first.history[-1]["scheme"] == "PQAT"
    again = compress(model, (x, y), None, RECIPE,
                     checkpoint_dir=str(tmp_path))
    assert [h["kind"] for h in again.history] == ["prune", "quantize"]
    assert again.history == first.history  # nothing was trained again
    np.testing.assert_allclose(again.model.predict(x[:16], verbose=0),
                               first.model.predict(x[:16], verbose=0),
                               atol=1e-6)
    assert first.history[0]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_saved_qat_model_loads_from_h5_and_keras_gets_advice(tmp_path):
    import tfcompress as tfc
    from converters import load_model
    x, y = classification_data(np.random.default_rng(0), n=64)
    qat = compile_clf(tfc.quantize(small_cnn()))
    qat.fit(x, y, epochs=1, verbose=0)
    qat.save(str(tmp_path / "qat.h5"))
    loaded = load_model(str(tmp_path / "qat.h5"))
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0),
                               qat.predict(x[:8], verbose=0), atol=1e-6)
    qat.save(str(tmp_path / "qat.keras"))
    with pytest.raises(ValueError, match=r"qat.keras: .*save the QAT model "
                                         r"with model.save\('model.h5'\)"):
        load_model(str(tmp_path / "qat.keras"))
