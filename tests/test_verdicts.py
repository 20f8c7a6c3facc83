"""Task-aware verdicts (converters.verdicts) on synthetic outputs: every rule
passes what it should and fails what it should."""

import numpy as np
import pytest

from converters import verdicts
from converters.runtimes import feeds
from converters.verdicts import OutputSpec

RNG = np.random.default_rng(0)


def _one(out, task, **kw):
    return verdicts.judge_one("out", out, task=task, **kw)


@pytest.mark.parametrize("spec, kw, task", [
    (OutputSpec("p", (10,), activation="softmax"), {}, "classification"),
    (OutputSpec("p", (10,), loss="sparse_categorical_crossentropy"), {},
     "classification"),
    (OutputSpec("m", (16, 16, 3), activation="softmax"), {}, "segmentation"),
    (OutputSpec("m", (16, 16, 3)), {"y": np.zeros((4, 16, 16), int)},
     "segmentation"),
    (OutputSpec("b", (1,), activation="sigmoid"), {}, "binary"),
    (OutputSpec("r", (640,), loss="mse"), {"input_shapes": [(640,)]},
     "reconstruction"),
    (OutputSpec("r", (640,)), {"input_shapes": [(640,)]}, "reconstruction"),
    (OutputSpec("r", (3,)), {"y": RNG.normal(size=(4, 3))}, "regression"),
    (OutputSpec("r", (1,)), {}, "regression"),
    (OutputSpec("e", (32,), activation="l2_normalize"), {}, "embedding"),
    (OutputSpec("e", (32,), loss="cosine_similarity"), {}, "embedding"),
    (OutputSpec("l", (5,)), {}, "classification"),
])
def test_task_inference(spec, kw, task):
    assert verdicts.infer(spec, **kw)[0] == task


def test_user_task_wins_and_unknown_task_is_named():
    specs = [OutputSpec("a", (5,), activation="softmax")]
    assert verdicts.resolve(specs, user={"a": "regression"})["a"][0] == \
        "regression"
    with pytest.raises(ValueError, match="unknown task 'ranking'.*valid"):
        verdicts.resolve(specs, user={"a": "ranking"})


def _low_margin(n=800, classes=4, flips=0.04):
    """Float logits with small margins on part of the samples; the quantized
    model flips exactly the lowest-margin ones; labels there are coin
    flips, so accuracy does not change although agreement is ~0.96."""
    ref = RNG.normal(size=(n, classes))
    margin = np.sort(ref, 1)[:, -1] - np.sort(ref, 1)[:, -2]
    flip = np.argsort(margin)[:int(flips * n)]
    out = ref.copy()
    top2 = np.argsort(ref[flip], 1)[:, -2:]
    out[flip, top2[:, 1]], out[flip, top2[:, 0]] = \
        ref[flip, top2[:, 0]], ref[flip, top2[:, 1]]
    y = ref.argmax(1)
    y[flip[::2]] = out[flip[::2]].argmax(1)  # half the flips now right
    return out, ref, y


def test_low_margin_classifier_passes_with_and_without_labels():
    out, ref, y = _low_margin()
    with_labels = _one(out, "classification", reference=ref, labels=y)
    assert with_labels.details["agreement"] < 0.98
    assert with_labels.metric == "accuracy_drop" and with_labels.passed
    assert abs(with_labels.value) <= 0.01
    without = _one(out, "classification", reference=ref)
    assert without.metric == "agreement" and without.passed
    assert without.threshold < without.value < 0.98
    assert without.details["agreement_confident"] == 1.0


def test_classifier_that_disagrees_on_confident_samples_fails():
    out, ref, y = _low_margin()
    broken = np.roll(ref, 1, axis=1)  # every decision moves
    assert not _one(broken, "classification", reference=ref).passed
    v = _one(broken, "classification", reference=ref, labels=y)
    assert v.metric == "accuracy_drop" and not v.passed
    # 30% of samples moved off their (confident) class: above the margin band
    mixed = ref.copy()
    confident = np.argsort(np.ptp(np.sort(ref, 1)[:, -2:], 1))[-240:]
    mixed[confident] = np.roll(ref[confident], 1, axis=1)
    assert not _one(mixed, "classification", reference=ref).passed


def test_labels_without_reference_need_min_accuracy_or_beat_chance():
    y = np.arange(1000) % 10
    wrong = np.eye(10)[(y + 1 + (np.arange(1000) % 20 == 0)) % 10]  # ~5%
    v = _one(wrong, "classification", labels=y)
    assert v.against == "chance" and not v.passed
    assert v.details["accuracy"] < 0.06 and "--min-accuracy" in v.why
    right = np.eye(10)[y]
    assert _one(right, "classification", labels=y).passed
    assert _one(right, "classification", labels=right).details[
        "accuracy"] == 1.0  # one-hot labels
    v = _one(right * 0.5 + wrong, "classification", labels=y,
             min_accuracy=0.99)
    assert v.metric == "accuracy" and v.threshold == 0.99 and not v.passed


def test_segmentation_is_judged_per_pixel():
    ref = RNG.normal(size=(6, 8, 8, 3))
    y = ref.argmax(-1)
    v = _one(ref + RNG.normal(scale=1e-3, size=ref.shape), "segmentation",
             reference=ref, labels=y)
    assert v.details["decisions"] == 6 * 8 * 8
    assert v.metric == "accuracy_drop" and v.passed
    bad = ref.copy()
    bad[:, :4] = np.roll(ref[:, :4], 1, axis=-1)  # half of every image
    v = _one(bad, "segmentation", reference=ref, labels=y)
    assert not v.passed and v.details["accuracy"] == pytest.approx(0.5)


def test_reconstruction_error_relative_to_range():
    ref = RNG.uniform(-1, 1, size=(50, 640))
    good = ref + RNG.normal(scale=0.004, size=ref.shape)
    v = _one(good, "reconstruction", reference=ref)
    assert v.metric == "relative_error" and v.passed
    assert v.details["snr_db"] > 30
    v = _one(ref * 4, "reconstruction", reference=ref, labels=ref)
    assert v.metric == "mae_growth" and not v.passed
    v = _one(ref * 4, "reconstruction", labels=ref)
    assert v.metric == "r2" and not v.passed
    v = _one(ref + 0.2, "regression", reference=ref, tolerance=0.2)
    assert v.threshold == 0.2 and v.passed


def test_embedding_cosine():
    ref = RNG.normal(size=(40, 32))
    assert _one(ref * 3 + 0.01, "embedding", reference=ref).passed
    assert not _one(RNG.normal(size=ref.shape), "embedding",
                    reference=ref).passed


def test_constant_float_model_is_flagged():
    ref = np.tile([0.1, 0.2, 0.7], (30, 1))
    v = _one(ref, "classification", reference=ref,
             labels=np.full(30, 2))
    assert not v.passed and v.flags == ["constant_reference"]
    assert "same output" in v.why and "30 samples" in v.why
    v = _one(ref, "classification")
    assert not v.passed and v.flags == ["constant_output"]
    assert _one(RNG.normal(size=(30, 3)), "classification").passed


def test_multi_output_judged_by_name():
    f_cls, f_val = RNG.normal(size=(60, 4)), RNG.normal(size=(60, 1))
    y_val = f_val[:, 0] + RNG.normal(scale=0.1, size=60)
    tasks = {"cls": ("classification", "t"), "val": ("regression", "t")}
    found = verdicts.judge(
        {"val": f_val * 3, "cls": f_cls}, tasks=tasks,
        reference={"cls": f_cls, "val": f_val},
        labels={"cls": f_cls.argmax(1), "val": y_val})
    by = {v.output: v for v in found}
    assert by["cls"].passed and by["cls"].task == "classification"
    assert not by["val"].passed and by["val"].metric == "mae_growth"
    assert by["val"].summary().startswith("val: mae_growth")
    with pytest.raises(ValueError, match="'bogus'.*outputs are"):
        verdicts.per_output({"bogus": 0.1}, ["cls", "val"], "--tolerance")
    assert verdicts.per_output({"": 0.1, "val": 0.3}, ["cls", "val"], "t") \
        == {"cls": 0.1, "val": 0.3}


@pytest.mark.parametrize("dtype, scale, zero", [
    ("INT8", 0.05, -3), ("UINT8", 0.02, 128), ("INT16", 0.001, 0)])
def test_float_data_is_quantized_with_the_inputs_own_parameters(dtype, scale,
                                                                 zero):
    port = feeds.Port("x", 0, dtype, (1, 4), scale, zero)
    x = np.array([[-0.5, 0.0, 0.25, 1.0]], np.float32)
    q = feeds.quantize(x, port)
    assert q.dtype == port.np_dtype
    np.testing.assert_allclose((q.astype(float) - zero) * scale, x,
                               atol=scale / 2 + 1e-9)
    raw = q.copy()
    assert feeds.quantize(raw, port) is raw  # already in the tensor's dtype


def test_integer_inputs_without_scale_refuse_fractions():
    port = feeds.Port("ids", 0, "INT32", (1, 4), 0.0, 0)
    assert feeds.quantize(np.array([[1.0, 2, 3, 4]]), port).dtype == np.int32
    with pytest.raises(ValueError, match="'ids'.*non-integer"):
        feeds.quantize(np.array([[1.5, 2, 3, 4]]), port)


def test_cli_judging_options():
    import click

    from tfcompress.cli import judging
    rules = judging.parse(("recon=reconstruction", "classification"),
                          ("0.02", "recon=0.1"))
    assert rules == {"tasks": {"recon": "reconstruction",
                               "": "classification"},
                     "tolerances": {"": 0.02, "recon": 0.1}}
    with pytest.raises(click.BadParameter, match="unknown task"):
        judging.parse(("ranking",), ())
    with pytest.raises(click.BadParameter, match="number"):
        judging.parse((), ("a=b",))


def test_accuracy_drop_within_sampling_noise_passes_a_real_loss_fails():
    from converters.verdicts import categorical
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    ref = y.copy()
    ref[:20] = (y[:20] + 1) % 4            # the float model: 93% accurate
    few = ref.copy()
    few[20:26] = (y[20:26] + 1) % 4        # 6 flip to wrong ...
    few[:2] = y[:2]                        # ... 2 to right: net -4 of 300
    fields = categorical.judge("classification", few, ref=ref,
                               ref_margin=None, margin_band=0.0, y=y,
                               tolerance=0.01, min_accuracy=None)
    assert fields["value"] == pytest.approx(4 / 300)   # over 1 point
    assert fields["value"] <= fields["threshold"]      # but only noise
    assert "sampling noise" in fields["why"]
    many = ref.copy()
    many[20:32] = (y[20:32] + 1) % 4       # 12 of 300 lost, none gained
    fields = categorical.judge("classification", many, ref=ref,
                               ref_margin=None, margin_band=0.0, y=y,
                               tolerance=0.01, min_accuracy=None)
    assert fields["value"] > fields["threshold"]       # a real loss: fails
    assert categorical.noise_drop(0, 300) == 0.0
