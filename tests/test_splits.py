"""Which rows train and which validate in ``optimize``
(:mod:`tfcompress.pipeline.splits`)."""

import numpy as np

from tfcompress.pipeline import splits
from tfcompress.pipeline.recipe import Recipe


def _fit(**fit):
    return Recipe.from_dict({"stages": [{"quantize": {}}], "fit": fit}).fit


def _data(n=50):
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    return x, np.arange(n) % 3


def test_default_trains_every_stage_on_all_rows_and_says_so():
    x, y = _data()
    split = splits.plan(x, y, None, 0.2, _fit())
    assert split.train[0] is x and split.final is None
    held = split.val[0][:, 0]
    assert len(held) == 10 and set(held) <= set(x[:, 0])  # trained on too
    assert split.info["holdout_trained"] is True
    assert split.info["trained"] == 50 and split.info["validated"] == 10
    assert "--val" in split.info["validation"]
    assert "trains too" in split.summary
    # seeded: the same rows every time
    again = splits.plan(x, y, None, 0.2, _fit())
    assert np.array_equal(again.val[0], split.val[0])


def test_all_data_off_keeps_the_holdout_out_until_the_last_stage():
    x, y = _data()
    split = splits.plan(x, y, None, 0.2, _fit(all_data=False))
    trained, held = set(split.train[0][:, 0]), set(split.val[0][:, 0])
    assert not trained & held and len(trained) == 40
    assert split.final[0] is x and split.info["final_stage_trained"] == 50
    strict = splits.plan(x, y, None, 0.2, _fit(all_data=False,
                                               final_all_data=False))
    assert strict.final is None and strict.info["holdout_trained"] is False


def test_separate_validation_data_trains_nothing_held_out():
    x, y = _data()
    val = _data(12)
    split = splits.plan(x, y, val, 0.2, _fit())
    assert split.train[0] is x and split.val is val
    assert split.info == {"trained": 50, "validated": 12,
                          "validation": "separate validation data (--val)",
                          "holdout_trained": False}
