"""Bad input never crashes or corrupts, and nothing runs that should not.

Sandboxed interpreters, the .tflite verifier, refusal of code-carrying Keras
files, a table of bad data, atomic artifacts under SIGKILL, and training
resumed mid-stage.
"""

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import classification_data, compile_clf, small_cnn
from converters import convert_bytes, load_model
from converters.runtimes import litert
from converters.runtimes import sandbox
from converters.tflite.flatbuffer import InvalidModelError
from converters.tflite.verify import verify
from tfcompress.pipeline import data as datasets
from tfcompress.pipeline import jobs as pipeline
from tfcompress.keras2.env import keras
from tfcompress.cli.main import main


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A small int8 Dense model, its file, and data files for it."""
    root = tmp_path_factory.mktemp("rel")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
    y = np.arange(32) % 4
    tflite = convert_bytes(model, x)
    path = root / "dense.tflite"
    path.write_bytes(tflite)
    np.savez(root / "d.npz", x=x, y=y)
    return {"model": model, "tflite": tflite, "path": str(path), "x": x,
            "y": y, "data": str(root / "d.npz"), "root": root}


def _one_line(exc_or_text) -> str:
    text = str(exc_or_text)
    assert text and "\n" not in text.strip(), text
    return text


# -- sandbox -----------------------------------------------------------------
def test_sandbox_returns_the_same_result_and_reraises_errors(dense):
    here = litert.run(dense["tflite"], dense["x"])
    there = sandbox.call(litert.run, dense["tflite"], dense["x"],
                         name=dense["path"])
    np.testing.assert_array_equal(there.raw_outputs, here.raw_outputs)
    with pytest.raises(ValueError, match=r"shape \(32, 3\)"):
        sandbox.call(litert.run, dense["tflite"], dense["x"][:, :3],
                     name=dense["path"])


def test_sandbox_turns_a_segfault_into_one_line(dense, reliability_counts):
    with pytest.raises(sandbox.SandboxError) as info:
        sandbox.call(ctypes.string_at, 0, name="evil.tflite",
                     what="the LiteRT interpreter")
    reliability_counts["contained"] += 1
    line = _one_line(info.value)
    assert "evil.tflite" in line and "SIGSEGV" in line
    # the caller lives on, and so does the next call
    out = sandbox.call(litert.run, dense["tflite"], dense["x"][:2],
                       name=dense["path"])
    assert out.raw_outputs.shape == (2, 4)


def test_sandbox_stops_a_hang(reliability_counts):
    started = time.perf_counter()
    with pytest.raises(sandbox.SandboxError, match=r"slow.tflite: .* 1 s"):
        sandbox.call(time.sleep, 60, name="slow.tflite", timeout=1)
    reliability_counts["contained"] += 1
    assert time.perf_counter() - started < 15


# -- verifier ----------------------------------------------------------------
def _edit(tflite: bytes, change) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(tflite))
    change(model, model.subgraphs[0])
    return bytes(fbu.convert_object_to_bytearray(model))


def _op(graph, name_part="FULLY"):
    return graph.operators[0]


CORRUPTIONS = [
    ("op input out of range",
     lambda m, g: setattr(_op(g), "inputs", [0, 99, -1]), "tensor 99"),
    ("op output out of range",
     lambda m, g: setattr(_op(g), "outputs", [1000]), "tensor 1000"),
    ("opcode index out of range",
     lambda m, g: setattr(_op(g), "opcodeIndex", 7), "operator_code 7"),
    ("buffer index out of range",
     lambda m, g: setattr(g.tensors[0], "buffer", 555), "buffer 555"),
    ("graph input out of range",
     lambda m, g: setattr(g, "inputs", [42]), "tensor 42"),
    ("negative dimension",
     lambda m, g: setattr(g.tensors[0], "shape", [1, -8]),
     "negative dimension"),
    ("huge declared shape",
     lambda m, g: setattr(g.tensors[0], "shape", [1 << 20, 1 << 20]),
     "more than the"),
    ("weights shorter than their shape",
     lambda m, g: [setattr(t, "shape", [64, 64]) for t in g.tensors
                   if m.buffers[t.buffer].data is not None][:1],
     "holds"),
    ("NaN scale",
     lambda m, g: setattr(g.tensors[0].quantization, "scale", [float("nan")]),
     "NaN"),
    ("zero point outside int8",
     lambda m, g: setattr(g.tensors[0].quantization, "zeroPoint", [300]),
     "zero point 300"),
    ("unknown tensor type",
     lambda m, g: setattr(g.tensors[0], "type", 99), "unknown type 99"),
    ("no subgraph", lambda m, g: setattr(m, "subgraphs", []), "no subgraph"),
]


def test_verifier_accepts_real_models(dense):
    verify(dense["tflite"], name="dense.tflite")


@pytest.mark.parametrize("label,change,expected", CORRUPTIONS,
                         ids=[c[0] for c in CORRUPTIONS])
def test_verifier_names_the_file_and_the_problem(dense, label, change,
                                                 expected,
                                                 reliability_counts):
    bad = _edit(dense["tflite"], change)
    reliability_counts["malformed"] += 1
    with pytest.raises(InvalidModelError) as info:
        verify(bad, name="bad.tflite")
    line = _one_line(info.value)
    assert line.startswith("bad.tflite: ") and expected in line, line


@pytest.mark.parametrize("command", ["inspect", "validate", "bench"])
def test_cli_refuses_a_corrupt_file_in_one_line(dense, command,
                                                reliability_counts):
    bad = dense["root"] / f"bad_{command}.tflite"
    bad.write_bytes(_edit(dense["tflite"], CORRUPTIONS[0][1]))
    args = [command, str(bad)] + (["--data", dense["data"]]
                                  if command == "validate" else [])
    result = CliRunner().invoke(main, args)
    reliability_counts["malformed"] += 1
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception,
                                                  SystemExit)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "tensor 99" in \
        lines[0], lines


def test_bench_and_validate_run_in_the_sandbox(dense):
    result = pipeline.bench_file(dense["path"], threads=(1,), runs=3,
                                 warmup=1)
    assert result["threads"][1]["median_ms"] > 0
    art = pipeline.validate_file(dense["path"], dense["x"], dense["y"],
                                 judging={"min_accuracy": 0.0})
    assert art.passed and art.report["validation"]["litert"]["samples"] == 32
    # an untrained model on random labels, no reference: judged vs chance
    art = pipeline.validate_file(dense["path"], dense["x"], dense["y"])
    (verdict,) = art.report["validation"]["litert"]["outputs"].values()
    assert verdict["against"] == "chance" and not art.passed


# -- untrusted Keras files ---------------------------------------------------
def _lambda_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(h))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_models_are_refused_unless_unsafe(tmp_path, suffix,
                                                 reliability_counts):
    model = _lambda_model()
    path = str(tmp_path / f"lam{suffix}")
    model.save(path)
    reliability_counts["bad_inputs"] += 1
    with pytest.raises(ValueError) as info:
        load_model(path)
    line = _one_line(info.value)
    assert path in line and "--unsafe" in line
    if suffix == ".h5":
        assert "Lambda layer 'double'" in line
    loaded = load_model(path, allow_unsafe=True)
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)


def test_h5_without_code_loads_and_cli_refuses_lambda(tmp_path, dense):
    plain = str(tmp_path / "plain.h5")
    dense["model"].save(plain)
    assert load_model(plain).count_params() == dense["model"].count_params()
    lam = str(tmp_path / "lam.h5")
    _lambda_model().save(lam)
    np.savez(tmp_path / "d4.npz", x=np.ones((8, 4), np.float32))
    result = CliRunner().invoke(main, ["convert", lam, "--data",
                                       str(tmp_path / "d4.npz"), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--unsafe" in lines[0], lines
    assert not (tmp_path / "out").exists()


# -- bad data ----------------------------------------------------------------
def _nan_weights_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, name="fc")])
    kernel, bias = model.get_layer("fc").get_weights()
    kernel[2, 1] = np.nan
    bias[0] = np.inf
    model.get_layer("fc").set_weights([kernel, bias])
    return model


def _npz(folder, name, **arrays):
    path = os.path.join(folder, name)
    np.savez(path, **arrays)
    return path


X = np.zeros((10, 8), np.float32)
BAD_INPUTS = [  # label, call(dense, tmp) -> raises, words the line must hold
    ("x empty", lambda d, t: datasets.check_x(np.zeros((0, 8)), "x"),
     ["x is empty", "(0, 8)"]),
    ("x scalar", lambda d, t: datasets.check_x(np.float32(3), "x"),
     ["x is a scalar"]),
    ("x strings", lambda d, t: datasets.check_x(np.array(["a", "b"]), "x"),
     ["x has dtype <U1", "(2,)"]),
    ("x complex", lambda d, t: datasets.check_x(X.astype(np.complex64), "x"),
     ["complex64", "(10, 8)"]),
    ("x NaN", lambda d, t: datasets.check_x(np.where(X == 0, np.nan, X), "x"),
     ["x (shape (10, 8)) holds 80 NaN/Inf"]),
    ("x Inf", lambda d, t: datasets.check_x(X + np.inf, "x"),
     ["NaN/Inf", "(10, 8)"]),
    ("x wrong shape", lambda d, t: datasets.check_x(X, "x", (None, 6, 6, 1)),
     ["x has shape (10, 8)", "(N, 6, 6, 1)"]),
    ("y length", lambda d, t: datasets.check_y(np.zeros(9, int), 10, "y"),
     ["y has 9 rows", "(9,)"]),
    ("y NaN", lambda d, t: datasets.check_y(np.full(10, np.nan), 10, "y"),
     ["y (shape (10,)) holds NaN"]),
    ("y strings", lambda d, t: datasets.check_y(np.array(["a"] * 10), 10,
                                                "y"), ["y has dtype <U1"]),
    ("y above classes", lambda d, t: datasets.check_y(
        np.arange(10), 10, "y", 4), ["labels in [0, 9]", "4 classes"]),
    ("y negative", lambda d, t: datasets.check_y(
        np.arange(10) - 1, 10, "y", 4), ["labels in [-1, 8]"]),
    ("y fractional", lambda d, t: datasets.check_y(
        np.linspace(0, 1, 10), 10, "y", 4), ["non-integer labels", "(10,)"]),
    ("npz without x", lambda d, t: datasets.load_npz(
        _npz(t, "nox.npz", inputs=X)), ["nox.npz: no array 'x'"]),
    ("npz with objects", lambda d, t: datasets.load_npz(
        _npz(t, "obj.npz", x=np.array([{"a": 1}] * 3, dtype=object))),
     ["obj.npz: not a readable .npz"]),
    ("npz garbage", lambda d, t: datasets.load_npz(
        _write(t, "junk.npz", b"not a zip")), ["junk.npz: not a readable"]),
    ("npz labels out of range", lambda d, t: pipeline.validate_file(
        d["path"], d["x"], d["y"] + 4, data_name="d.npz"),
     ["d.npz:y", "(32,)", "4 classes"]),
    ("npz x wrong shape for the .tflite", lambda d, t: pipeline.validate_file(
        d["path"], d["x"][:, :5], data_name="d.npz"),
     ["d.npz:x has shape (32, 5)", "(N, 8)"]),
    ("NaN/Inf weights", lambda d, t: datasets.check_weights(
        _nan_weights_model()), ["layer 'fc'", "fc/kernel", "(8, 4)",
                                "1 NaN/Inf"]),
    ("empty representative data", lambda d, t: pipeline.convert_and_validate(
        d["model"], d["x"][:0], d["x"]), ["representative data is empty",
                                          "(0, 8)"]),
]


def _write(folder, name, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("label,call,words", BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_array(dense, tmp_path, label, call,
                                                words, reliability_counts):
    reliability_counts["bad_inputs"] += 1
    with pytest.raises(ValueError) as info:
        call(dense, str(tmp_path))
    line = _one_line(info.value)
    for word in words:
        assert word in line, line


# -- atomic artifacts --------------------------------------------------------
_SLOW_WRITER = textwrap.dedent("""
    import os, sys, time
    from converters.files import atomic_write
    path, marker = sys.argv[1], sys.argv[2]
    real_fdopen = os.fdopen

    class Stalling:  # writes half, says so, then hangs until killed
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)
        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            open(marker, "w").close()
            time.sleep(120)
        def __getattr__(self, name):
            return getattr(self.f, name)

    os.fdopen = lambda fd, mode: Stalling(real_fdopen(fd, mode))
    atomic_write(path, b"N" * (16 << 20))
""")


def test_sigkill_mid_write_leaves_the_previous_artifact(tmp_path):
    from converters.files import atomic_write
    target = tmp_path / "model.tflite"
    atomic_write(target, b"previous artifact")
    marker = tmp_path / "writing"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER,
                              str(target), str(marker)], env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        assert child.poll() is None, "the writer died before writing"
        time.sleep(0.05)
    assert marker.exists()
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert target.read_bytes() == b"previous artifact"
    leftovers = [p for p in tmp_path.iterdir()
                 if p.name not in ("model.tflite", "writing")]
    # killed mid-write: the half-written temp file exists, hidden
    assert [p.stat().st_size for p in leftovers] == [8 << 20]
    assert all(p.name.startswith(".") for p in leftovers)
    atomic_write(target, b"next artifact")
    assert target.read_bytes() == b"next artifact"


# -- interrupted training ----------------------------------------------------
class _Interrupted(Exception):
    pass


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.losses = epoch, []

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(logs["loss"])
        if epoch == self.epoch:
            raise _Interrupted(f"stopped after epoch {epoch}")


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_stage_interrupted_mid_way_resumes_from_the_last_epoch(tmp_path):
    from tfcompress.pipeline.stages import compress
    x, y = classification_data(np.random.default_rng(0), n=128)
    recipe = {"stages": [{"prune": {"target_sparsity": 0.6,
                                    "schedule": "polynomial", "epochs": 4}}],
              "fit": {"batch_size": 32,
                      "loss": "sparse_categorical_crossentropy",
                      "from_logits": True, "validation_split": 0.0,
                      "verbose": 0}}
    ckpt = str(tmp_path / "ckpt")
    stop = _StopAfter(1)
    with pytest.raises(_Interrupted):
        compress(compile_clf(small_cnn()), (x, y), None, recipe,
                 checkpoint_dir=ckpt, callbacks=[stop])
    counter = _CountEpochs()
    result = compress(compile_clf(small_cnn()), (x, y), None, recipe,
                      checkpoint_dir=ckpt, callbacks=[counter])
    stage = result.history[0]
    assert counter.epochs == [2, 3]           # resumed, not restarted
    assert len(stage["history"]["loss"]) == 4
    assert stage["history"]["loss"][:2] == pytest.approx(stop.losses)
    assert stage["pruning_step"] == 4 * 4     # 4 epochs x 4 steps, no reset
    assert stage["sparsity"] == pytest.approx(0.6, abs=0.01)
    left = os.listdir(ckpt)  # the stage is saved; its epoch state is gone
    assert "stages.json" in left and not [
        n for n in left if "backup" in n or "epochs" in n], left
