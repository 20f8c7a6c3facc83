"""The emitted micro sources in a real TFLM C++ build (host 64-bit and -m32).

The host library is built once per machine from the TFLM sources next to the
repository (``../shared/tflm`` or ``TFCOMPRESS_TFLM_SRC``) and cached
(:mod:`converters.runtimes.tflm_build`); where there are none these tests skip
with one line. Each emitted model (sine and digits, plain and encoded) is
compiled with its generated ``main.cc`` under ``-Wall -Wextra -Werror``, run
at the reported arena on validation samples, and its outputs compared bit for
bit with the Python TFLM interpreter; a clearly smaller arena must be refused
and the reported arena must be within 5% above the true minimum of that very
program.
"""

import re
import subprocess

import numpy as np
import pytest

from converters.conversion.modes import convert_bytes
from converters.runtimes import tflm, tflm_arena, tflm_build
from converters.targets import micro_emit, micro_example, micro_ship
from converters.tflite import flatbuffer
from sample_models import digits, sine
from tfcompress.keras2.env import keras

ARCHES = ("64", "m32")


def _lib(arch: str) -> tflm_build.HostLibrary:
    reason = tflm_build.unavailable_reason(arch)
    if reason:
        pytest.skip(f"TFLM C++ build ({arch}) unavailable: {reason}")
    return tflm_build.library(arch)


# ------------------------------------------------------------- models -----

def _cluster(model, levels=16):
    """Snap each output channel's kernel to ``levels`` evenly spaced values,
    as weight clustering leaves it (so the LUT encoding applies)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        k = np.moveaxis(weights[0], -1, 0)
        flat = k.reshape(k.shape[0], -1)
        for row in flat:
            grid = np.linspace(row.min(), row.max(), levels)
            row[:] = grid[np.abs(row[:, None] - grid[None]).argmin(1)]
        weights[0] = np.moveaxis(flat.reshape(k.shape), 0, -1)
        layer.set_weights(weights)
    return model


def _trained(sample, epochs):
    (x, y), (x_test, _) = sample.load_data()
    model = sample.build_model()
    sample.compile_model(model)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return _cluster(model), x, x_test


def _encoder(method: str):
    """Every int8 weight tensor the method takes, encoded with it (even
    where the file grows: the product ships an encoding only where the plan
    says it pays, the C++ path is the same either way)."""
    def encode(tflite: bytes) -> bytes:
        from converters.encodings import decode, planner
        weights = [c for c in decode.constants(tflite)
                   if c.dtype == "INT8" and c.refusal is None]
        assert weights
        return decode.apply(tflite, {c.index: planner.ENCODERS[method](c)
                                     for c in weights})
    return encode


# The encodings the emitted C source must carry, each checked in the C++
# build like the plain model.
ENCODERS = {"none": lambda tflite: tflite, "lut": _encoder("lut"),
            "prune": _encoder("prune"), "huffman": _encoder("huffman")}


@pytest.fixture(scope="module")
def models():
    """name -> (plain int8 bytes, int8 validation inputs)."""
    out = {}
    for sample, epochs, n in ((sine, 3, 200), (digits, 1, 120)):
        model, x, x_test = _trained(sample, epochs)
        plain = flatbuffer.strip_strings(convert_bytes(model, x[:200], mode="int8"))
        t = flatbuffer.read(plain).input_details[0]
        xq = np.clip(np.round(x_test[:n] / t.scale[0] + t.zero_point[0]),
                     -128, 127).astype(np.int8)
        out[sample.NAME] = (plain, xq)
    keras.backend.clear_session()
    return out


_SHIPPED: dict = {}


def _shipped(models, name, encoding):
    """The shipped model (measured in both C++ builds, checked against the
    Python interpreter) and the Python interpreter's outputs; cached."""
    key = (name, encoding)
    if key not in _SHIPPED:
        plain, xq = models[name]
        data = ENCODERS[encoding](plain)
        shipped = micro_ship.ship(data, encoding=encoding,
                                  file=f"{name}_{encoding}.tflite",
                                  inputs=[xq])
        expected = tflm.run(data, xq, arena_size=4 * shipped.arena.bytes_64)
        _SHIPPED[key] = (shipped, xq, expected)
    return _SHIPPED[key]


# ------------------------------------------------------------ helpers -----

def _emit(shipped, out_dir, name):
    info = flatbuffer.read(shipped.tflite)
    micro_emit.write_sources(shipped.tflite, str(out_dir), arena=shipped.arena,
                             info=info, name=name, shipped=shipped.description)
    micro_example.write_example(str(out_dir), name=name, arena=shipped.arena,
                                data_bytes=shipped.bytes,
                                shipped=shipped.description, info=info)


def _compile(lib, sources, exe, include):
    cmd = ["g++", *lib.flags, "-O1", "-Wall", "-Wextra", "-Werror",
           f"-I{include}", *map(str, sources), *lib.libs, "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return exe


def _run(exe, samples: np.ndarray, arena=None):
    args = [str(exe)] + ([str(arena)] if arena is not None else [])
    return subprocess.run(args, input=samples.tobytes(), capture_output=True,
                          timeout=60)


def _outputs(stdout: bytes, n: int) -> np.ndarray:
    lines = stdout.decode().splitlines()
    assert [ln.split(":")[0] for ln in lines] == [f"out {i}" for i in range(n)]
    return np.array([[int(v) for v in ln.split(":")[1].split()] for ln in lines])


def _header_value(text: str, name: str) -> int:
    return int(re.search(rf"constexpr unsigned int {name} = (\d+);", text).group(1))


def _array(cc: str) -> bytes:
    body = re.search(r"kModelData\[\] = \{(.*?)\};", cc, re.DOTALL).group(1)
    return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body))


# -------------------------------------------------------------- tests -----

@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name, encoding", [
    ("digits", "huffman"),
    ("sine", "none"),
    *[pytest.param(n, e, marks=pytest.mark.slow) for n, e in (
        ("digits", "none"), ("digits", "lut"), ("digits", "prune"),
        ("sine", "lut"), ("sine", "prune"), ("sine", "huffman"))],
])
def test_emitted_model_runs_bit_exact_at_reported_arena(models, tmp_path, arch,
                                                        name, encoding):
    lib = _lib(arch)
    shipped, xq, expected = _shipped(models, name, encoding)
    arena = shipped.arena
    assert arena.source == "tflm-c++", arena.note
    assert shipped.cpp_check[arch]["identical"], shipped.cpp_check
    _emit(shipped, tmp_path, name)
    header = (tmp_path / f"{name}_data.h").read_text()
    assert _array((tmp_path / f"{name}_data.cc").read_text()) == shipped.tflite
    assert ("AddDecode()" in header) == (encoding != "none")
    reported = arena.bytes if arch == "m32" else arena.bytes_64
    assert _header_value(header, "kTensorArenaSize" + ("32" if arch == "m32" else "64")) \
        == reported

    exe = _compile(lib, [tmp_path / "main.cc", tmp_path / f"{name}_data.cc"],
                   tmp_path / "example", tmp_path)
    ok = _run(exe, xq)
    assert ok.returncode == 0, ok.stderr
    got = _outputs(ok.stdout, len(xq))
    np.testing.assert_array_equal(got, expected[0].reshape(len(xq), -1))
    assert np.unique(got).size > 3  # real outputs, not a constant

    refused = _run(exe, xq[:1], arena=int(reported * 0.8) // 16 * 16)
    assert refused.returncode != 0 and b"out 0" not in refused.stdout
    if refused.returncode > 0:
        assert refused.returncode == 2 and b"AllocateTensors failed" in refused.stderr

    # the true minimum of this very program, by bisection at 16-byte steps
    lo, hi = 0, reported
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if _run(exe, xq[:1], arena=mid).returncode == 0:
            hi = mid
        else:
            lo = mid
    minimum = arena.minimum_32 if arch == "m32" else arena.minimum_64
    assert hi == minimum
    assert minimum < reported <= 1.05 * minimum


def test_model_header_needs_no_tflm_and_cxx17(models, tmp_path):
    lib = _lib("64")
    shipped, _, _ = _shipped(models, "digits", "huffman")
    _emit(shipped, tmp_path, "digits")
    plain_i = [f.replace("-isystem", "-I") for f in lib.flags]
    assert "-I" in plain_i and "-isystem" not in plain_i
    cmd = ["g++", *plain_i, "-Wall", "-Wextra", "-Werror", "-Wpedantic",
           f"-I{tmp_path}", "-c", str(tmp_path / "digits_data.cc"), "-o",
           str(tmp_path / "d.o")]
    subprocess.run(cmd, check=True)
    header = (tmp_path / "digits_data.h").read_text()
    assert "#include" not in header
    old = subprocess.run(["g++", "-std=c++14", f"-I{tmp_path}", "-c",
                          str(tmp_path / "digits_data.cc"), "-o",
                          str(tmp_path / "old.o")], capture_output=True, text=True)
    assert old.returncode != 0 and "needs C++17" in old.stderr


_TWO = r"""
#include <cstdio>
#include "sine_data.h"
#include "digits_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

template <typename Resolver, size_t kArena>
int RunOnce(const unsigned char* data, Resolver& resolver, bool ok,
            uint8_t (&arena)[kArena]) {
  if (!ok) return 4;
  tflite::MicroInterpreter interpreter(tflite::GetModel(data), resolver,
                                       arena, kArena);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 2;
  TfLiteTensor* in = interpreter.input(0);
  for (size_t i = 0; i < in->bytes; ++i) in->data.int8[i] = 0;
  if (interpreter.Invoke() != kTfLiteOk) return 3;
  TfLiteTensor* out = interpreter.output(0);
  std::printf("out:");
  for (size_t i = 0; i < out->bytes; ++i) std::printf(" %d", out->data.int8[i]);
  std::printf("\n");
  return 0;
}

alignas(16) uint8_t sine_arena[sine::kTensorArenaSize];
alignas(16) uint8_t digits_arena[digits::kTensorArenaSize];

int main() {
  static tflite::MicroMutableOpResolver<sine::kNumOps> sine_ops;
  static tflite::MicroMutableOpResolver<digits::kNumOps> digits_ops;
  int a = RunOnce(sine::kModelData, sine_ops, sine::RegisterOps(sine_ops), sine_arena);
  int b = RunOnce(digits::kModelData, digits_ops, digits::RegisterOps(digits_ops),
                  digits_arena);
  return a * 10 + b;
}
"""


def test_two_models_link_into_one_firmware(models, tmp_path):
    lib = _lib("m32" if not tflm_build.unavailable_reason("m32") else "64")
    for name, encoding in (("sine", "none"), ("digits", "huffman")):
        _emit(_shipped(models, name, encoding)[0], tmp_path, name)
    (tmp_path / "two.cc").write_text(_TWO)
    exe = _compile(lib, [tmp_path / "two.cc", tmp_path / "sine_data.cc",
                         tmp_path / "digits_data.cc"], tmp_path / "two", tmp_path)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = [[int(v) for v in ln.split(":")[1].split()] for ln in run.stdout.splitlines()]
    for row, name in zip(got, ("sine", "digits")):
        data = _shipped(models, name, "none" if name == "sine" else "huffman")[0].tflite
        shape = flatbuffer.read(data).input_details[0].shape
        zeros = np.zeros([1, *shape[1:]], np.int8)
        want = tflm.run(data, zeros, arena_size=1 << 20)[0]
        assert row == want.reshape(-1).tolist()


def test_ship_falls_back_honestly_without_a_cpp_build(models, monkeypatch, tmp_path):
    """No TFLM sources: the Python runtime's figure, labelled, never below
    what the C++ build needs; no -m32: the 64-bit C++ figure, labelled."""
    plain, xq = models["sine"]
    python_min = tflm.find_arena(plain)
    monkeypatch.setenv("TFCOMPRESS_TFLM_SRC", str(tmp_path))  # no build.sh
    assert "no TFLM sources" in tflm_build.unavailable_reason("64")
    none = micro_ship.ship(plain, python_minimum=python_min, inputs=[xq])
    assert none.arena.source == "python-tflm" and none.arena.minimum_32 is None
    assert "not measured in a TFLM C++ build: no TFLM sources" in none.arena.note
    assert none.arena.bytes == none.arena.bytes_64 > python_min
    assert "skipped" in none.cpp_check
    header = micro_emit.render_sources(plain, arena=none.arena, name="sine")["sine_data.h"]
    assert "Python tflite-micro runtime" in header and "upper bound" in header
    monkeypatch.delenv("TFCOMPRESS_TFLM_SRC")

    _lib("64")
    monkeypatch.setattr(tflm_build, "_m32_probe", lambda: "no -m32 here")
    only64 = micro_ship.ship(plain, python_minimum=python_min, inputs=[xq])
    assert only64.arena.source == "tflm-c++-64" and "no -m32 here" in only64.arena.note
    assert only64.arena.bytes == only64.arena.bytes_64
    assert list(only64.cpp_check) == ["64"] and only64.cpp_check["64"]["identical"]
    # both fallbacks are upper bounds of the real (C++) figures
    assert only64.arena.minimum_64 < python_min


def _emitted(out_dir, name="model"):
    cc = (out_dir / f"{name}_data.cc").read_text()
    h = (out_dir / f"{name}_data.h").read_text()
    return len(_array(cc)), _header_value(h, "kTensorArenaSize32")


@pytest.mark.parametrize("case", [
    "encoded",  # clustered digits under a tight flash budget: the plan encodes
    "plain-no-cpp",  # sine, no C++ build: the Python figure, labelled
    pytest.param("plain", marks=pytest.mark.slow),  # sine with the C++ build
])
def test_budget_verdict_describes_exactly_the_emitted_sources(case, monkeypatch,
                                                              tmp_path):
    from converters import convert
    sample = digits if case == "encoded" else sine
    if case == "plain-no-cpp":
        monkeypatch.setenv("TFCOMPRESS_TFLM_SRC", str(tmp_path / "none"))
    else:
        _lib("m32")
        _lib("64")
    model, x, x_test = _trained(sample, 1)
    art = convert(model, x[:200], target="micro", name=sample.NAME)
    device = {"ram": 65536 if case == "encoded" else 8000, "flash": 10000}
    art.device = device
    art.c_name = sample.NAME
    report = art.validate(x_test[:100], require=False)
    out = tmp_path / "out"
    art.save(str(out))
    flash, ram = _emitted(out, sample.NAME)
    shipped = report["micro"]
    assert shipped["array_bytes"] == flash and shipped["arena"]["bytes"] == ram
    if case == "encoded":
        assert shipped["encoding"] != "none"
    assert (out / shipped["file"]).read_bytes() == art.shipped.tflite == art.tflite
    budget = report["budget"]
    assert budget["flash"]["used"] == flash and budget["ram"]["used"] == ram
    assert budget["fits_flash"] == (flash <= device["flash"])
    assert budget["fits_ram"] == (ram <= device["ram"])
    for fit in report["budgets"].values():
        assert (fit["flash"]["used"], fit["ram"]["used"]) == (flash, ram)
    # the verdict flips exactly at the emitted sizes
    assert art.shipped.fit(None, ram=ram, flash=flash)["fits"]
    assert not art.shipped.fit(None, ram=ram - 1, flash=flash)["fits_ram"]
    assert not art.shipped.fit(None, ram=ram, flash=flash - 1)["fits_flash"]
    if case == "plain-no-cpp":
        assert shipped["arena"]["source"] == "python-tflm"
    else:
        assert shipped["arena"]["source"] == "tflm-c++"
        assert all(c["identical"] for c in shipped["cpp_check"].values())
    md = (out / "report.md").read_text()
    assert "## Microcontroller C source" in md and f"{ram:,}" in md
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".h", ".cc", ".md")) \
        == sorted(["BUILD.md", "main.cc", f"{sample.NAME}_data.cc",
                   f"{sample.NAME}_data.h", "report.md"])
    assert "arena_used_bytes()" in (out / "BUILD.md").read_text()  # the warning
    header = (out / f"{sample.NAME}_data.h").read_text()
    assert ("AddDecode() == 0" in header) == (shipped["encoding"] != "none")


@pytest.mark.parametrize("need", [16, 1000, 5000, 4096, 70_000,
                                  tflm_arena.ARENA_CEILING])
@pytest.mark.parametrize("start", [16, 4096, 1 << 20])
def test_arena_search_finds_the_smallest_working_size(need, start):
    """The one search both TFLM runtimes (Python, C++ build) use: the
    smallest multiple of 16 that runs, never probing past the ceiling."""
    probes = []

    def ok(n: int) -> bool:
        probes.append(n)
        return n >= need

    found = tflm_arena.smallest_arena(ok, start)
    assert found == -(-need // 16) * 16, (found, probes)
    assert all(0 < n <= tflm_arena.ARENA_CEILING and n % 16 == 0
               for n in probes), probes
    assert len(probes) < 60, len(probes)
