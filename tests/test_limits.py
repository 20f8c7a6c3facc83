"""Untrusted files meet bounded children, both verifiers, and one-line errors.

The sine model with one byte of its input shape flipped declares an input
of [419430401, 1]; without limits LiteRT grows past 9 GiB on it. Here every
child that touches a user's file runs under RLIMIT_AS (its start plus
``TFCOMPRESS_CHILD_MEMORY``) and RLIMIT_CPU, so the mutant ends in one line
within seconds. Data files are checked by their declared sizes before
loading; LiteRT's C++ flatbuffers verifier runs before Python reads a
.tflite; every error names its file.
"""

import os
import signal
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from converters import convert_bytes
from converters.runtimes import childproc, sandbox
from converters.tflite.flatbuffer import InvalidModelError, strip_strings
from tfcompress.cli.main import main
from tfcompress.pipeline import jobs
from tfcompress.pipeline import data as datasets

CAP = "1G"  # the stated cap for these tests: 1 GiB beyond the child's start


def _u32(b, p):
    return struct.unpack_from("<I", b, p)[0]


def _ref(b, table, field):
    """Absolute position a table's offset field points to (flatbuffers)."""
    vtable = table - struct.unpack_from("<i", b, table)[0]
    off = struct.unpack_from("<H", b, vtable + 4 + 2 * field)[0]
    return table + off + _u32(b, table + off)


def _tables(b, vector):
    return [vector + 4 + 4 * k + _u32(b, vector + 4 + 4 * k)
            for k in range(_u32(b, vector))]


def _subgraph(b):
    return _tables(b, _ref(b, _u32(b, 0), 2))[0]


def _input_shape_pos(b) -> int:
    graph = _subgraph(b)
    first_input = _u32(b, _ref(b, graph, 1) + 4)
    tensor = _tables(b, _ref(b, graph, 0))[first_input]
    return _ref(b, tensor, 0) + 4   # the first dimension


@pytest.fixture(scope="module")
def sine(tmp_path_factory):
    from sample_models import sine as sample
    root = tmp_path_factory.mktemp("limits")
    (x, y), _ = sample.load_data()
    tflite = convert_bytes(sample.build_model(), x[:100])
    good = root / "sine.tflite"
    good.write_bytes(tflite)
    b = bytearray(tflite)
    pos = _input_shape_pos(b)
    assert struct.unpack_from("<ii", b, pos) == (1, 1)
    b[pos + 3] = 0x19                 # one byte: [1, 1] -> [419430401, 1]
    huge = root / "sine_huge.tflite"
    huge.write_bytes(bytes(b))
    np.savez(root / "sine.npz", x=x[:64], y=y[:64])
    return {"root": root, "good": str(good), "huge": str(huge),
            "data": str(root / "sine.npz"), "tflite": tflite}


@pytest.fixture(params=[CAP])
def capped(monkeypatch, request):
    """A fresh sandbox server whose children get the stated cap."""
    sandbox.shutdown()
    monkeypatch.setenv(childproc.MEMORY_ENV, request.param)
    yield childproc.memory_cap()
    sandbox.shutdown()


def _one_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception,
                                                  SystemExit), result.exception
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


@pytest.mark.parametrize("capped", ["1G", "2G"], indirect=True)
def test_the_huge_input_mutant_ends_in_one_line_within_seconds(sine, capped):
    """1 GiB: the declared input alone is refused before allocation; 2 GiB:
    LiteRT's allocation fails against RLIMIT_AS (unbounded it grew past
    9 GiB in 40 s on this model)."""
    jobs.bench_file(sine["good"], threads=(1,), runs=2, warmup=0)  # warm
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["bench", sine["huge"], "--runs", "2"])
    took = time.perf_counter() - started
    line = _one_line(result)
    cap = f"{capped / 2**30:.1f} GiB"
    words = "more than a quarter of the" if capped < 2 << 30 else "capped at"
    assert sine["huge"] in line and f"{words} {cap}" in line, line
    assert took < 20, took     # unbounded, LiteRT ran for minutes past 9 GiB
    peak = sandbox.shutdown()  # the children this server forked, only
    # a forked child's peak counts the pages it touched itself (not the
    # server's shared ones): unbounded, LiteRT's took it past 9 GiB
    assert peak is not None and 0 < peak < capped, peak
    print(f"cap {capped / 2**30:.1f} GiB: one line after {took:.1f} s, "
          f"largest child RSS {peak / 2**30:.2f} GiB")


def test_validate_refuses_a_batch_the_data_cannot_fill(sine):
    line = _one_line(CliRunner().invoke(
        main, ["validate", sine["huge"], "--data", sine["data"]]))
    assert "[419430401, 1]" in line and "(64)" in line, line


def test_a_child_past_its_memory_cap_is_one_line(capped):
    with pytest.raises(sandbox.SandboxError) as info:
        sandbox.call(bytearray, 2 * capped, name="big.tflite",
                     what="the LiteRT interpreter")
    line = str(info.value)
    assert "\n" not in line and line.startswith("big.tflite: ") and \
        "MemoryError" in line and "capped at 1.0 GiB" in line, line


def test_a_child_past_its_cpu_limit_is_stopped():
    code = ("from converters.runtimes.childproc import limit_resources\n"
            "limit_resources(1)\nwhile True: pass\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], check=False,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert proc.returncode == -signal.SIGXCPU
    assert time.monotonic() - started < 15
    assert "CPU-time limit" in childproc.limit_note(proc.returncode)


def test_data_files_are_checked_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.MAX_DATA_ENV, str(32 << 20))
    bomb = tmp_path / "bomb.npz"   # 64 MiB of zeros in a ~70 kB file
    np.savez_compressed(bomb, x=np.zeros((16 << 20,), np.float32))
    started = time.perf_counter()
    with pytest.raises(datasets.DataError, match=r"bomb.npz: declares "
                       r"67,108,864 bytes .*TFCOMPRESS_MAX_DATA_BYTES"):
        datasets.load_npz(str(bomb))
    assert time.perf_counter() - started < 1   # nothing was decompressed
    one = np.lib.format
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(forged, "w") as zf:
        with zf.open("x.npy", "w") as f:
            one.write_array_header_1_0(f, {"descr": "<f4", "fortran_order":
                                           False, "shape": (1 << 40,)})
            f.write(bytes(16))
    with pytest.raises(datasets.DataError, match=r"forged.npz: array 'x' "
                       r"declares shape \(1099511627776,\)"):
        datasets.load_npz(str(forged))


def test_bad_values_are_one_line_naming_the_file(sine, tmp_path):
    wide = tmp_path / "wide.npz"
    np.savez(wide, x=np.full((8, 1), 1e300))
    with pytest.raises(datasets.DataError, match=r"wide.npz:x .* beyond "
                       "float32's range"):
        datasets.load_npz(str(wide))
    hot = tmp_path / "hot.npz"
    np.savez(hot, x=np.ones((4, 2), np.float32), y=np.eye(4))
    x, y = datasets.load_npz(str(hot))
    with pytest.raises(datasets.DataError, match=r"hot.npz:y has shape "
                       r"\(4, 4\): one-hot .* y.argmax\(axis=1\)"):
        datasets.check_y(y, 4, f"{hot}:y", 4)


def _field_outside(tflite: bytes, offset: int) -> bytes:
    """The first operator's builtin options: field 0 at ``offset``."""
    b = bytearray(tflite)
    graph = _subgraph(b)
    op = _tables(b, _ref(b, graph, 3))[0]
    options = _ref(b, op, 4)
    vtable = options - struct.unpack_from("<i", b, options)[0]
    struct.pack_into("<H", b, vtable + 4, offset)
    return bytes(b)


def test_litert_s_flatbuffers_verifier_runs_before_reading(sine, tmp_path):
    runner = CliRunner()
    outside_file = tmp_path / "outside_file.tflite"   # past the last byte
    outside_file.write_bytes(_field_outside(sine["tflite"], 0xFFF0))
    line = _one_line(runner.invoke(main, ["inspect", str(outside_file)]))
    assert str(outside_file) in line and "LiteRT's flatbuffer verifier " \
        "rejects" in line, line
    outside_table = tmp_path / "outside_table.tflite"  # inside the file
    outside_table.write_bytes(_field_outside(sine["tflite"], 200))
    line = _one_line(runner.invoke(main, ["inspect", str(outside_table)]))
    assert "lies outside the table (offset 200" in line, line
    with pytest.raises(InvalidModelError, match="LiteRT's flatbuffer"):
        jobs.load_tflite(str(outside_file))


def test_micro_on_a_stripped_model_with_a_dynamic_dimension(sine, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(strip_strings(
        sine["tflite"])))
    tensor = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    tensor.shapeSignature = np.array([-1, -1], np.int32)
    path = tmp_path / "dynamic.tflite"
    path.write_bytes(bytes(fbu.convert_object_to_bytearray(model)))
    line = _one_line(CliRunner().invoke(main, [
        "validate", str(path), "--data", sine["data"], "--target", "micro"]))
    assert str(path) in line and "dynamic shape" in line, line


def test_a_tflm_only_failure_says_so(capsys):
    cli = sys.modules["tfcompress.cli.main"]

    class Art:
        name = "m.tflite"
        passed = False
        report = {"tflite": {"bytes": 1, "gzip_bytes": 1, "input": {},
                             "output": {}, "ops": []},
                  "validation": {"litert": {"passed": True},
                                 "micro": {"agreement": 0.5, "max_abs_lsb": 9,
                                           "arena_bytes": 1,
                                           "arena_recommended": 2},
                                 "passed": False,
                                 "failures": ["TFLM output differs from "
                                              "LiteRT: 9 LSB"]}}
    with pytest.raises(SystemExit):
        cli._finish(Art())
    err = capsys.readouterr().err
    assert "TFLM output differs from LiteRT" in err and '"passed": true' \
        not in err, err
