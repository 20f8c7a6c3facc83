"""Generated TFLM sources: they compile, register exactly the model's ops, and
carry the exact .tflite bytes."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from converters.targets import budgets
from converters.tflite import flatbuffer
from converters.targets import micro
from converters.targets import micro_emit, micro_example
from converters.targets.micro_arena import ArenaFigures
from converters.conversion.modes import convert_bytes
from tfcompress.keras2.env import keras

GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not installed")

_MAIN = r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

int main(int argc, char** argv) {
  (void)argc;
  tflite::MicroMutableOpResolver<model::kNumOps> resolver;
  if (!model::RegisterOps(resolver)) return 1;
  std::printf("registered %u of %d\n", resolver.count, model::kNumOps);
  std::printf("arena %u\n", model::kTensorArenaSize);
  std::printf("aligned %d\n",
              (int)(reinterpret_cast<std::uintptr_t>(model::kModelData) % 16 == 0));
  std::FILE* f = std::fopen(argv[1], "wb");
  std::fwrite(model::kModelData, 1, model::kModelDataSize, f);
  std::fclose(f);
  return 0;
}
"""


def _stub_header(root):
    """A stand-in for TFLM's resolver header: the real Add* names, each
    printing its name, refusing more than tOpCount registrations."""
    methods = sorted(set(micro.BUILTIN_OPS.values()) | set(micro.CUSTOM_OPS.values()))
    body = "\n".join(f'  TfLiteStatus {m}() {{ return Record("{m}"); }}'
                     for m in methods)
    text = f"""#pragma once
#include <cstdio>
typedef enum {{ kTfLiteOk = 0, kTfLiteError = 1 }} TfLiteStatus;
namespace tflite {{
template <unsigned int tOpCount>
class MicroMutableOpResolver {{
 public:
  unsigned int count = 0;
{body}
 private:
  TfLiteStatus Record(const char* name) {{
    if (count >= tOpCount) return kTfLiteError;
    ++count;
    std::printf("op %s\\n", name);
    return kTfLiteOk;
  }}
}};
}}  // namespace tflite
"""
    path = root / "stub" / "tensorflow" / "lite" / "micro"
    path.mkdir(parents=True)
    (path / "micro_mutable_op_resolver.h").write_text(text)
    return root / "stub"


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(4)
    m = keras.Sequential([keras.layers.Input((4,)),
                          keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(4).normal(size=(64, 4)).astype(np.float32)
    return convert_bytes(m, x, mode="int8")


_FIGURES = ArenaFigures(bytes=1424, bytes_64=1952, minimum_32=1360,
                        minimum_64=1872, python_minimum=2192,
                        note="measured", tflm_commit="90b983c2b3f1" + "0" * 28)


def test_array_bytes_equal_tflite(model, tmp_path):
    paths = micro_emit.write_sources(model, str(tmp_path), arena=_FIGURES)
    assert [os.path.basename(p) for p in paths] == ["model_data.h", "model_data.cc"]
    cc = (tmp_path / "model_data.cc").read_text()
    h = (tmp_path / "model_data.h").read_text()
    body = re.search(r"alignas\(16\) const unsigned char kModelData\[\] = \{(.*?)\};",
                     cc, re.DOTALL).group(1)
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == model
    assert f"kModelDataSize = {len(model)};" in h and "namespace model {" in h
    assert "kTensorArenaSize32 = 1424;" in h and "kTensorArenaSize64 = 1952;" in h
    assert "minimum 1360 B + margin 64 B" in h and "90b983c2b3f1" in h
    assert "kNumOps = 2;" in h and "#include" not in h
    assert "resolver.AddFullyConnected() == 0" in h and "resolver.AddSoftmax() == 0" in h
    assert sorted(os.listdir(tmp_path)) == ["model_data.cc", "model_data.h"]


def _m32_ok() -> bool:
    from converters.runtimes import tflm_build
    return GXX is not None and tflm_build._m32_probe() is None


@needs_gxx
@pytest.mark.parametrize("bits", [64, pytest.param(32, marks=pytest.mark.skipif(
    not _m32_ok(), reason="g++ -m32 cannot link (install g++-multilib)"))])
def test_sources_compile_and_register_exactly_the_ops(model, tmp_path, bits):
    out = tmp_path / "out"
    micro_emit.write_sources(model, str(out), arena=_FIGURES)
    stub = _stub_header(tmp_path)
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{stub}", f"-I{out}"]
    flags += ["-m32"] if bits == 32 else []
    subprocess.run([GXX, *flags, "-c", str(out / "model_data.cc"), "-o",
                    str(tmp_path / "model_data.o")], check=True)
    (tmp_path / "main.cc").write_text(_MAIN)
    exe = tmp_path / "main"
    subprocess.run([GXX, *flags, str(tmp_path / "main.cc"),
                    str(tmp_path / "model_data.o"), "-o", str(exe)], check=True)
    run = subprocess.run([str(exe), str(tmp_path / "dump.tflite")],
                         check=True, capture_output=True, text=True)
    lines = run.stdout.splitlines()
    ops = [ln.split()[1] for ln in lines if ln.startswith("op ")]
    assert ops == micro.resolver_methods(flatbuffer.read(model))
    # kTensorArenaSize follows the pointer size it is compiled for
    assert "registered 2 of 2" in lines
    assert f"arena {1424 if bits == 32 else 1952}" in lines
    assert "aligned 1" in lines
    assert (tmp_path / "dump.tflite").read_bytes() == model


def test_rewrite_is_atomic_and_replaces(model, tmp_path):
    micro_emit.write_sources(model, str(tmp_path), arena=1000)
    micro_emit.write_sources(model, str(tmp_path), arena=3000, name="net")
    micro_emit.write_sources(model, str(tmp_path), arena=2000)
    assert sorted(os.listdir(tmp_path)) == ["model_data.cc", "model_data.h",
                                            "net_data.cc", "net_data.h"]
    assert "kTensorArenaSize32 = 2000;" in (tmp_path / "model_data.h").read_text()
    assert "namespace net {" in (tmp_path / "net_data.cc").read_text()


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "model-data", "arena": 10}, "C\\+\\+ identifier"),
    ({"name": "tflite", "arena": 10}, "not a keyword"),
    ({"arena": 0}, "positive"),
])
def test_bad_arguments(model, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        micro_emit.write_sources(model, str(tmp_path), **kwargs)
    assert os.listdir(tmp_path) == []


def test_arduino_library_layout(model, tmp_path):
    paths = micro_example.write_arduino_library(model, str(tmp_path), arena=4096)
    rel = sorted(os.path.relpath(p, tmp_path) for p in paths)
    assert rel == sorted([
        "tfcompress_model/src/model_data.h", "tfcompress_model/src/model_data.cc",
        "tfcompress_model/library.properties",
        "tfcompress_model/examples/tfcompress_model/tfcompress_model.ino"])
    sketch = (tmp_path / "tfcompress_model/examples/tfcompress_model/"
              "tfcompress_model.ino").read_text()
    assert "model::RegisterOps(resolver)" in sketch
    assert "arena_used_bytes" not in sketch


# ----------------------------------------------------------------- budgets --

def test_budget_fit_and_shortfall():
    ok = budgets.fit("cortex-m4", model_bytes=100_000, arena_bytes=50_000)
    assert ok["fits"] and ok["ram"]["headroom"] == 256 * 1024 - 50_000
    assert ok["flash"]["used_pct"] == pytest.approx(100 * 100_000 / 2**20, abs=0.01)
    tight = budgets.fit("cortex-m0+", model_bytes=100_000, arena_bytes=40_000)
    assert tight["fits_flash"] and not tight["fits_ram"] and not tight["fits"]
    assert tight["ram"]["headroom"] == 32 * 1024 - 40_000
    custom = budgets.fit(None, model_bytes=10, arena_bytes=10, ram=64, flash=16,
                         flash_reserved=8)
    assert custom["profile"] == "custom" and not custom["fits_flash"]


def test_budget_profiles_and_errors():
    assert budgets.get("ESP32-S3").ram == 512 * 1024
    assert budgets.get("nrf52840").flash == 1024 * 1024
    assert budgets.get({"ram": 1, "flash": 2}).flash == 2
    with pytest.raises(ValueError, match="valid names: .*cortex-m4"):
        budgets.get("cortex-m99")
    with pytest.raises(ValueError, match="ram= and flash="):
        budgets.fit(None, model_bytes=1, arena_bytes=1)
