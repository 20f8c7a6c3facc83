"""Fuzz ``tfcompress inspect`` and ``validate`` with malformed .tflite files.

Real int8 models (a Dense and a Conv model, converted here) are mutated:
bit flips, 32-bit words overwritten with huge or small values (offsets,
vector lengths, indices, dimensions), truncation, spliced and zeroed runs,
wrong file identifiers and random bytes. Every file goes through the CLI;
the test process must survive, and every failure must be exactly one line
``Error: ...``. Seeded (``derandomize=True``): the same files every run.
"""

import os
import struct

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import convert_bytes
from converters.tflite.flatbuffer import InvalidModelError
from converters.tflite.verify import verify
from tfcompress.keras2.env import keras
from tfcompress.cli.main import main

KINDS = ("bitflip", "word", "truncate", "splice", "zero_run", "identifier",
         "random")
_WORDS = (0, 1, 2, 3, 7, 255, 1 << 16, (1 << 31) - 1, 1 << 31,
          (1 << 32) - 1, (1 << 32) - 4)


def _models():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    dense = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    conv = keras.Sequential([keras.Input((6, 6, 1)),
                             keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(3)])
    out = {}
    for name, model, classes in (("dense", dense, 4), ("conv", conv, 3)):
        x = rng.normal(size=(16, *model.input_shape[1:])).astype(np.float32)
        out[name] = (convert_bytes(model, x), x, np.arange(16) % classes)
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    out = {}
    for name, (tflite, x, y) in _models().items():
        data = str(root / f"{name}.npz")
        np.savez(data, x=x, y=y)
        out[name] = (tflite, data)
    return out


def mutate(data: bytes, kind: str, seed: int) -> bytes:
    """A malformed copy of ``data``; ``kind`` is one of :data:`KINDS`."""
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    n = len(b)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(n))] ^= 1 << int(rng.integers(8))
    elif kind == "word":  # offsets, lengths, indices, dims: huge or small
        for _ in range(int(rng.integers(1, 3))):
            pos = int(rng.integers(n // 4)) * 4
            b[pos:pos + 4] = struct.pack("<I", int(rng.choice(_WORDS)))
    elif kind == "truncate":
        b = b[:int(rng.integers(0, n))]
    elif kind == "splice":
        src, dst, size = (int(rng.integers(n)), int(rng.integers(n)),
                          int(rng.integers(4, 128)))
        b[dst:dst + size] = data[src:src + size]
    elif kind == "zero_run":
        pos = int(rng.integers(n))
        b[pos:pos + int(rng.integers(1, 64))] = bytes(64)[:min(64, n - pos)]
    elif kind == "identifier":
        b[4:8] = [b"TFL2", b"\0\0\0\0", b"tfl3", b"TFL"][int(rng.integers(4))]
    else:  # random bytes, half of them with the right identifier
        b = bytearray(rng.bytes(int(rng.integers(0, 4096))))
        if seed % 2 and len(b) >= 8:
            b[4:8] = b"TFL3"
    return bytes(b)


def _check_outcome(result, path: str, counts: dict) -> str:
    """``"ok"`` or the error line; asserts there is nothing else."""
    if result.exception is not None and not isinstance(result.exception,
                                                       SystemExit):
        counts["crashes"] += 1
        raise AssertionError(f"uncaught {result.exception!r} on {path}")
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 0:
        return "ok"
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if len(lines) != 1 or not lines[0].startswith("Error: "):
        counts["crashes"] += 1
        raise AssertionError(f"not one error line for {path}: {lines}")
    if "crashed with signal" in lines[0] or "did not finish" in lines[0]:
        counts["contained"] += 1
        assert path in lines[0], lines[0]
    return lines[0]


def _fuzz(seeds, folder, counts, examples: int) -> dict:
    tally = {"tried": 0, "verified": 0, "validated": 0}
    path = os.path.join(folder, "mutant.tflite")
    runner = CliRunner()

    @settings(max_examples=examples, derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(model=st.sampled_from(sorted(seeds)), kind=st.sampled_from(KINDS),
           seed=st.integers(0, 2**32 - 1))
    def run(model, kind, seed):
        tflite, data = seeds[model]
        mutant = mutate(tflite, kind, seed)
        if mutant == tflite:
            return
        with open(path, "wb") as f:
            f.write(mutant)
        tally["tried"] += 1
        counts["malformed"] += 1
        try:
            verify(mutant, name=path)
            tally["verified"] += 1
        except InvalidModelError:
            pass
        _check_outcome(runner.invoke(main, ["inspect", path, "--json"]),
                       path, counts)
        # --quiet: no progress lines, so stderr holds the error alone
        line = _check_outcome(runner.invoke(
            main, ["--quiet", "validate", path, "--data", data]), path,
            counts)
        if line == "ok" or "validation failed" in line:
            tally["validated"] += 1

    run()
    return tally


def test_valid_seed_models_pass_inspect_and_validate(seeds):
    runner = CliRunner()
    for tflite, data in seeds.values():
        verify(tflite)
    folder = os.path.dirname(next(iter(seeds.values()))[1])
    for name, (tflite, data) in seeds.items():
        path = os.path.join(folder, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        assert runner.invoke(main, ["inspect", path]).exit_code == 0
        # untrained seeds with random labels: no accuracy bar (without
        # one, labels and no reference mean "beat chance")
        result = runner.invoke(main, ["validate", path, "--data", data,
                                      "--min-accuracy", "0"])
        assert result.exit_code == 0, result.output
        assert "validation       passed" in result.output


def test_malformed_files_give_one_line_errors(seeds, tmp_path,
                                              reliability_counts):
    examples = 250
    tally = _fuzz(seeds, str(tmp_path), reliability_counts, examples)
    assert tally["tried"] >= 0.97 * examples, tally
    # the verifier must not refuse everything: many mutants (bit flips in
    # weights) are sound flatbuffers and reach the interpreter (in a child)
    assert tally["verified"] >= 0.05 * tally["tried"], tally
    assert tally["validated"] >= 0.04 * tally["tried"], tally


@pytest.mark.slow
def test_a_model_that_crashes_tflm_is_one_line(seeds, tmp_path,
                                               reliability_counts):
    """TFLM does not verify flatbuffers: find a sound-looking mutant that
    kills a TFLM probe with a signal, then validate it for micro."""
    from converters.runtimes import tflm_arena
    tflite, data = seeds["conv"]
    path = str(tmp_path / "crasher.tflite")
    for seed in range(1500):
        mutant = mutate(tflite, "bitflip", seed)
        try:
            verify(mutant)
        except InvalidModelError:
            continue
        with open(path, "wb") as f:
            f.write(mutant)
        code, _ = tflm_arena._probe(path, tflm_arena.ARENA_CEILING, 1, 20)
        if code is not None and code < 0:
            break
    else:
        pytest.fail("no bit flip of the conv model crashes TFLM any more; "
                    "pick another mutation")
    result = CliRunner().invoke(main, ["validate", path, "--data", data,
                                       "--target", "micro"])
    reliability_counts["malformed"] += 1
    line = _check_outcome(result, path, reliability_counts)
    assert "crashed with signal" in line and path in line, line


@pytest.mark.slow
def test_malformed_files_many(seeds, tmp_path, reliability_counts):
    tally = _fuzz(seeds, str(tmp_path), reliability_counts, examples=1200)
    assert tally["tried"] >= 1000
    assert tally["verified"] >= 0.05 * tally["tried"], tally
