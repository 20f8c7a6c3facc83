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
from converters.targets import micro_emit
from converters.conversion.modes import convert_bytes
from tfcompress.keras2.env import keras

GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not installed")

_MAIN = r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"

int main(int argc, char** argv) {
  tflite::MicroMutableOpResolver<kNumOps> resolver;
  if (RegisterOps(resolver) != kTfLiteOk) return 1;
  std::printf("registered %u of %d\n", resolver.count, kNumOps);
  std::printf("arena %d\n", kTensorArenaSize);
  std::printf("aligned %d\n",
              (int)(reinterpret_cast<std::uintptr_t>(g_model_data) % 16 == 0));
  std::FILE* f = std::fopen(argv[1], "wb");
  std::fwrite(g_model_data, 1, g_model_data_len, f);
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


def test_array_bytes_equal_tflite(model, tmp_path):
    paths = micro_emit.write_sources(model, str(tmp_path), arena_bytes=2288,
                                     arena_minimum=2192)
    assert [os.path.basename(p) for p in paths] == ["model_data.h", "model_data.cc"]
    cc = (tmp_path / "model_data.cc").read_text()
    h = (tmp_path / "model_data.h").read_text()
    body = re.search(r"alignas\(16\) const unsigned char g_model_data\[\] = \{(.*?)\};",
                     cc, re.DOTALL).group(1)
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == model
    assert f"g_model_data_len = {len(model)};" in cc
    assert "constexpr int kTensorArenaSize = 2288;" in h
    assert "kNumOps = 2;" in h and "2192" in h
    assert "resolver.AddFullyConnected()" in cc and "resolver.AddSoftmax()" in cc
    assert sorted(os.listdir(tmp_path)) == ["model_data.cc", "model_data.h"]


@needs_gxx
def test_sources_compile_and_register_exactly_the_ops(model, tmp_path):
    out = tmp_path / "out"
    micro_emit.write_sources(model, str(out), arena_bytes=4096)
    stub = _stub_header(tmp_path)
    flags = ["-std=c++17", "-Wall", "-Werror", f"-I{stub}", f"-I{out}"]
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
    assert "registered 2 of 2" in lines and "arena 4096" in lines
    assert "aligned 1" in lines
    assert (tmp_path / "dump.tflite").read_bytes() == model


def test_rewrite_is_atomic_and_replaces(model, tmp_path):
    micro_emit.write_sources(model, str(tmp_path), arena_bytes=1000)
    micro_emit.write_sources(model, str(tmp_path), arena_bytes=3000, name="net")
    micro_emit.write_sources(model, str(tmp_path), arena_bytes=2000)
    assert sorted(os.listdir(tmp_path)) == ["model_data.cc", "model_data.h",
                                            "net.cc", "net.h"]
    assert "kTensorArenaSize = 2000;" in (tmp_path / "model_data.h").read_text()
    assert "g_net[]" in (tmp_path / "net.cc").read_text()


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "model-data", "arena_bytes": 10}, "C identifier"),
    ({"arena_bytes": 0}, "positive"),
])
def test_bad_arguments(model, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        micro_emit.write_sources(model, str(tmp_path), **kwargs)
    assert os.listdir(tmp_path) == []


def test_arduino_library_layout(model, tmp_path):
    paths = micro_emit.write_arduino_library(model, str(tmp_path), arena_bytes=4096)
    rel = sorted(os.path.relpath(p, tmp_path) for p in paths)
    assert rel == sorted([
        "tfcompress_model/src/model_data.h", "tfcompress_model/src/model_data.cc",
        "tfcompress_model/library.properties",
        "tfcompress_model/examples/tfcompress_model/tfcompress_model.ino"])
    assert "RegisterOps(resolver)" in (
        tmp_path / "tfcompress_model/examples/tfcompress_model/tfcompress_model.ino"
    ).read_text()


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
