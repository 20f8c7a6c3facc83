// Host runner used by tfcompress to measure and check a model in a real
// TensorFlow Lite Micro C++ build (plain tflite::MicroInterpreter).
//
//   tflm_runner MODEL.tflite ARENA_BYTES [IN.bin OUT.bin]
//
// Compiled with -DTFC_OPS_HEADER='"<name>_data.h"' -DTFC_NS=<name>: the
// generated model header supplies kNumOps and RegisterOps(). The model bytes
// are read from MODEL.tflite at run time, so one binary serves every model
// with the same ops.
// Without IN.bin: allocate ARENA_BYTES and invoke once on zeros (a probe).
// With IN.bin: samples back to back, each the raw bytes of every input in
// order; OUT.bin receives, per sample, the raw bytes of every output.
// Exit status: 0 ok, 1 usage or file error, 2 AllocateTensors failed,
// 3 Invoke failed, 4 model not usable (schema version, RegisterOps).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include TFC_OPS_HEADER
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

bool ParseSize(const char* s, size_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') return false;
  *out = static_cast<size_t>(v);
  return true;
}

// 16-byte aligned copy of a whole file; nullptr on error.
uint8_t* ReadAligned(const char* path, size_t* size) {
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return nullptr;
  std::fseek(f, 0, SEEK_END);
  long n = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (n <= 0) {
    std::fclose(f);
    return nullptr;
  }
  *size = static_cast<size_t>(n);
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(16, (*size + 15) / 16 * 16));
  if (buf != nullptr && std::fread(buf, 1, *size, f) != *size) {
    std::free(buf);
    buf = nullptr;
  }
  std::fclose(f);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  size_t arena_bytes = 0;
  if ((argc != 3 && argc != 5) || !ParseSize(argv[2], &arena_bytes)) {
    std::fprintf(stderr, "usage: %s MODEL.tflite ARENA_BYTES [IN.bin OUT.bin]\n", argv[0]);
    return 1;
  }
  size_t model_size = 0;
  uint8_t* model_data = ReadAligned(argv[1], &model_size);
  if (model_data == nullptr) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    std::fprintf(stderr, "model schema version %u, TFLM expects %d\n",
                 static_cast<unsigned>(model->version()), TFLITE_SCHEMA_VERSION);
    return 4;
  }
  static tflite::MicroMutableOpResolver<TFC_NS::kNumOps> resolver;
  if (!TFC_NS::RegisterOps(resolver)) {
    std::fprintf(stderr, "RegisterOps failed\n");
    return 4;
  }
  // Exactly arena_bytes as far as TFLM is concerned, 16-byte aligned.
  uint8_t* arena = static_cast<uint8_t*>(std::aligned_alloc(16, (arena_bytes + 15) / 16 * 16 + 16));
  if (arena == nullptr) return 1;
  tflite::MicroInterpreter interpreter(model, resolver, arena, arena_bytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 2;
  std::printf("arena=%zu arena_used_bytes=%zu pointer_bytes=%zu\n", arena_bytes,
              interpreter.arena_used_bytes(), sizeof(void*));
  if (argc == 3) {
    for (size_t k = 0; k < interpreter.inputs_size(); ++k) {
      TfLiteTensor* in = interpreter.input(k);
      std::memset(in->data.raw, 0, in->bytes);
    }
    return interpreter.Invoke() == kTfLiteOk ? 0 : 3;
  }
  std::FILE* fin = std::fopen(argv[3], "rb");
  std::FILE* fout = std::fopen(argv[4], "wb");
  if (fin == nullptr || fout == nullptr) {
    std::fprintf(stderr, "cannot open %s or %s\n", argv[3], argv[4]);
    return 1;
  }
  size_t samples = 0;
  for (;; ++samples) {
    bool eof = false;
    for (size_t k = 0; k < interpreter.inputs_size(); ++k) {
      TfLiteTensor* in = interpreter.input(k);
      size_t got = std::fread(in->data.raw, 1, in->bytes, fin);
      if (got == 0 && k == 0) {
        eof = true;
        break;
      }
      if (got != in->bytes) {
        std::fprintf(stderr, "%s: short read in sample %zu input %zu\n", argv[3], samples, k);
        return 1;
      }
    }
    if (eof) break;
    if (interpreter.Invoke() != kTfLiteOk) return 3;
    for (size_t k = 0; k < interpreter.outputs_size(); ++k) {
      TfLiteTensor* out = interpreter.output(k);
      std::fwrite(out->data.raw, 1, out->bytes, fout);
    }
  }
  std::fclose(fin);
  std::fclose(fout);
  std::printf("samples=%zu\n", samples);
  return 0;
}
