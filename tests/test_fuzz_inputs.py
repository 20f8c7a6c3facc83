"""Fuzz the other files a user hands over: ``.keras`` zips, ``.h5`` files
and recipes.

Real tf_keras model files (a plain Dense model and one with a Lambda layer
that writes a canary file) are mutated at the byte level (the same
mutations as ``test_fuzz``) and inside the archive (``config.json`` bytes
mutated and re-zipped); built-in recipes are mutated as text and generated
as random structures. Every outcome must be a loaded model / a recipe, or
exactly one line naming the file, of an exception type the CLI reports;
no mutant may run the Lambda's code without ``--unsafe``. Seeded
(``derandomize=True``): the same files every run.
"""

import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import load_model
from test_fuzz import KINDS, mutate
from tfcompress.keras2.env import keras
from tfcompress.pipeline import recipe as recipes

#: what the CLI turns into one ``Error:`` line (tfcompress.cli.main._errors)
REPORTED = (ValueError, FileNotFoundError, RuntimeError, OSError, TypeError)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_inputs")
    canary = str(root / "canary")
    keras.utils.set_random_seed(0)
    plain = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(2)])
    plain.compile("adam", "mse")
    inp = keras.Input((4,))
    lam = keras.layers.Lambda(
        lambda t, p=canary: (open(p, "w").close(), t)[1], name="canary")
    code = keras.Model(inp, keras.layers.Dense(2)(lam(inp)))
    out = {"root": root, "canary": canary, "files": {}}
    for name, model in (("plain", plain), ("lambda", code)):
        for ext in (".keras", ".h5"):
            path = root / f"{name}{ext}"
            model.save(path)
            out["files"][f"{name}{ext}"] = path.read_bytes()
    if os.path.exists(canary):   # building the model ran the lambda
        os.remove(canary)
    return out


def _rezip(data: bytes, kind: str, seed: int, path: str) -> bytes:
    """The archive with its config.json mutated (still a valid zip)."""
    src = path + ".src"
    with open(src, "wb") as f:
        f.write(data)
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["config.json"] = mutate(members["config.json"], kind, seed)
    with zipfile.ZipFile(src, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    with open(src, "rb") as f:
        return f.read()


def _load_outcome(path: str, canary: str) -> str:
    try:
        model = load_model(path)
    except REPORTED as exc:
        text = str(exc).strip()
        assert text and "\n" not in text, (path, text)
        assert path in text, text
        outcome = "refused"
    except Exception as exc:  # noqa: BLE001 - the finding
        raise AssertionError(f"{path}: {type(exc).__name__} escapes: "
                             f"{exc}") from None
    else:
        assert model.predict(np.ones((1, 4), np.float32), verbose=0).size
        outcome = "loaded"
    assert not os.path.exists(canary), f"{path} ran its Lambda"
    return outcome


def _fuzz_models(seeds, examples: int) -> dict:
    tally = {"tried": 0, "loaded": 0, "refused": 0}
    names = sorted(seeds["files"])

    @settings(max_examples=examples, derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(names), kind=st.sampled_from(KINDS),
           inside=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def run(name, kind, inside, seed):
        original = seeds["files"][name]
        ext = os.path.splitext(name)[1]
        path = str(seeds["root"] / f"mutant{ext}")
        mutant = _rezip(original, kind, seed, path) \
            if inside and ext == ".keras" else mutate(original, kind, seed)
        if mutant == original:
            return
        with open(path, "wb") as f:
            f.write(mutant)
        tally["tried"] += 1
        tally[_load_outcome(path, seeds["canary"])] += 1

    run()
    return tally


def test_mutated_keras_and_h5_files_load_or_fail_in_one_line(seeds,
                                                            monkeypatch):
    from converters.loading import codescan
    monkeypatch.setattr(codescan, "H5_TIMEOUT", 10)  # one mutant hangs HDF5
    tally = _fuzz_models(seeds, examples=40)
    assert tally["tried"] >= 30 and tally["refused"], tally


@pytest.mark.slow
def test_mutated_keras_and_h5_files_many(seeds):
    tally = _fuzz_models(seeds, examples=600)
    assert tally["tried"] >= 500 and tally["loaded"], tally


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) |
    st.floats(allow_nan=True) | st.text(max_size=12) |
    st.sampled_from(["prune", "cluster", "quantize", "epochs", "fit",
                     "stages", "target_sparsity", "clusters"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["stages", "fit", "prune", "cluster", "quantize",
                         "epochs", "target_sparsity", "clusters", "schedule",
                         "batch_size", "loss", "x"]), inner, max_size=4),
    max_leaves=12)


def _fuzz_recipes(folder, examples: int) -> dict:
    texts = [open(p, "rb").read() for p in sorted(
        os.path.join(recipes.__file__.rsplit(os.sep, 1)[0], "recipes", n)
        for n in os.listdir(os.path.join(os.path.dirname(recipes.__file__),
                                         "recipes")))]
    tally = {"ok": 0, "refused": 0}
    path = os.path.join(folder, "mutant.yaml")

    @settings(max_examples=examples, derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(k=st.integers(0, len(texts) - 1), kind=st.sampled_from(KINDS),
           seed=st.integers(0, 2**32 - 1), structure=_JSON)
    def run(k, kind, seed, structure):
        with open(path, "wb") as f:
            f.write(mutate(texts[k], kind, seed))
        for load, name in ((lambda: recipes.Recipe.load(path), path),
                           (lambda: recipes.Recipe.from_dict(structure),
                            None)):
            try:
                load()
                tally["ok"] += 1
            except REPORTED as exc:
                text = str(exc).strip()
                assert text and "\n" not in text, text
                assert name is None or name in text, text
                tally["refused"] += 1

    run()
    return tally


def test_mutated_recipes_load_or_fail_in_one_line(tmp_path):
    tally = _fuzz_recipes(str(tmp_path), examples=150)
    assert tally["refused"] > 100, tally


@pytest.mark.slow
def test_mutated_recipes_many(tmp_path):
    tally = _fuzz_recipes(str(tmp_path), examples=1500)
    assert tally["ok"] and tally["refused"], tally
