"""C++ sources for a TFLM firmware: the model as an array, its arena, its ops.

:func:`write_sources` writes ``<name>_data.h`` and ``<name>_data.cc``
(``name`` defaults to ``model``: ``model_data.h``/``.cc``). Everything sits in
``namespace <name>``, so two models live in one firmware:

* ``const unsigned char kModelData[]`` (16-byte aligned) — the exact bytes
  of the ``.tflite`` that ships (plain or with encoded weights; TFLM reads the
  flatbuffer in place) and ``kModelDataSize``;
* ``kTensorArenaSize`` — the arena for a plain ``tflite::MicroInterpreter``
  (see :mod:`converters.targets.micro_arena`): the 32-bit figure when
  compiled with 4-byte pointers, the 64-bit host figure otherwise
  (``kTensorArenaSize32``/``kTensorArenaSize64``);
* ``template <typename OpResolver> bool RegisterOps(OpResolver&)`` —
  registers exactly the model's ops (``AddDecode()`` for encoded weights),
  ``kNumOps`` of them.

The header includes no TFLM header (it compiles with TFLM on a plain ``-I``
and ``-Wall -Wextra -Werror``) and refuses anything below C++17, which TFLM
needs. :mod:`converters.targets.micro_example` writes the example
``main.cc`` and ``BUILD.md`` beside them. Files are written atomically.

Example:
    >>> write_sources(tflite, "build/kws", arena=figures, name="kws")
    ['build/kws/kws_data.h', 'build/kws/kws_data.cc']
"""

from __future__ import annotations

import os
import re
import textwrap

from converters.targets.micro import resolver_methods
from converters.targets.micro_arena import ArenaFigures, from_bytes
from converters.tflite import flatbuffer
from converters.tflite.flatbuffer import ModelInfo

__all__ = ["check_name", "render_header", "render_source", "render_sources",
           "write_sources"]

_BYTES_PER_LINE = 12
_RESERVED = {"alignas", "alignof", "and", "asm", "auto", "bool", "break",
             "case", "catch", "char", "class", "const", "constexpr",
             "continue", "default", "delete", "do", "double", "else", "enum",
             "explicit", "export", "extern", "false", "float", "for",
             "friend", "goto", "if", "inline", "int", "long", "mutable",
             "namespace", "new", "noexcept", "not", "nullptr", "operator",
             "or", "private", "protected", "public", "register", "return",
             "short", "signed", "sizeof", "static", "struct", "switch",
             "template", "this", "throw", "true", "try", "typedef", "typename",
             "union", "unsigned", "using", "virtual", "void", "volatile",
             "while", "std", "tflite", "main"}


def write_text(path: str, text: str) -> str:
    """ASCII text, written atomically with ``\\n`` line ends."""
    from converters.files import atomic_write
    return atomic_write(path, text.encode("ascii"))


def check_name(name: str) -> str:
    """``name`` if it can be a C++ namespace and file prefix, else ValueError."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or "") \
            or name in _RESERVED or name.startswith("__"):
        raise ValueError(f"name must be a C++ identifier that is not a "
                         f"keyword, std, tflite or main (it names the "
                         f"namespace and the files <name>_data.h/.cc). Got: "
                         f"{name!r}; e.g. --name kws")
    return name


def _array_lines(data: bytes) -> str:
    rows = []
    for i in range(0, len(data), _BYTES_PER_LINE):
        chunk = data[i:i + _BYTES_PER_LINE]
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(rows)


def _arena_comment(arena: ArenaFigures) -> str:
    def line(label: str, minimum: int | None, total: int) -> str:
        if minimum:
            return (f"//   {label} minimum {minimum} B + margin "
                    f"{total - minimum} B = {total} B")
        return f"//   {label} {total} B"
    if arena.source == "tflm-c++":
        head = ("// Tensor arena for a plain tflite::MicroInterpreter, measured "
                "in a TFLM C++\n// build (reference kernels; smallest working "
                "size at 16-byte steps,\n// plus a 5% margin):")
        rows = [line("32-bit targets (-m32):", arena.minimum_32, arena.bytes),
                line("64-bit hosts:         ", arena.minimum_64,
                     arena.bytes_64)]
    else:
        head = textwrap.fill("Tensor arena: " + arena.note + ".", width=79,
                             initial_indent="// ", subsequent_indent="// ")
        rows = [line("all targets:", None, arena.bytes)]
    return "\n".join([head, *rows,
                      "// Optimized kernels (CMSIS-NN, ESP-NN) may need more "
                      "scratch memory: if\n// AllocateTensors() fails, raise "
                      "the arena. Do not size it from\n// arena_used_bytes(): "
                      "that leaves out memory TFLM needs only while it\n// "
                      "allocates, so it is below the real minimum."])


def render_header(info: ModelInfo, *, name: str = "model",
                  arena: ArenaFigures | None, methods: list[str] | None = None,
                  data_bytes: int | None = None,
                  shipped: str = "the .tflite") -> str:
    """The text of ``<name>_data.h`` (``arena=None``: 16 B, for internal
    runners that pass their own arena)."""
    check_name(name)
    arena = arena or from_bytes(16, "placeholder")
    methods = resolver_methods(info) if methods is None else methods
    guard = f"TFCOMPRESS_{name.upper()}_DATA_H_"
    ops = ", ".join(f"{k} x{v}" for k, v in info.op_counts().items())
    decode = "AddDecode" in methods
    if arena.tflm_commit:
        measured = (f"// Arena measured with TFLM commit {arena.tflm_commit[:12]} "
                    "(host C++ build).\n")
    elif arena.source == "python-tflm":
        measured = ("// Arena measured with the Python tflite-micro runtime "
                    "only (no TFLM C++\n// build was available).\n")
    else:
        measured = ""
    needs = [f"{measured}// Needs C++17 (-std=c++17) and the same "
             "-DTF_LITE_STATIC_MEMORY (and\n// -DUSE_TFLM_COMPRESSION, if "
             "any) as the TFLM library."]
    if decode:
        needs.append("// Encoded weights: the TFLM library must have the "
                     "DECODE kernel\n// (tensorflow/lite/micro/kernels/"
                     "decode*.cc; RegisterOps() calls AddDecode()).")
    calls = " &&\n         ".join(f"resolver.{m}() == 0" for m in methods) \
        or "true"
    size_line = (f"constexpr unsigned int kModelDataSize = {int(data_bytes)};\n"
                 if data_bytes is not None else "")
    return f"""\
// Generated by tfcompress from {shipped}. Do not edit; regenerate instead.
{chr(10).join(needs)}
// No TFLM header is included here: include
// "tensorflow/lite/micro/micro_mutable_op_resolver.h" where you call
// RegisterOps(), with TFLM's folders on -isystem if you build with -Werror.
#ifndef {guard}
#define {guard}

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "{name}_data.h needs C++17 (-std=c++17), as TensorFlow Lite Micro does"
#endif

namespace {name} {{

// The .tflite flatbuffer in flash, 16-byte aligned.
extern const unsigned char kModelData[];
{size_line}
{_arena_comment(arena)}
//   alignas(16) static uint8_t tensor_arena[{name}::kTensorArenaSize];
constexpr unsigned int kTensorArenaSize32 = {arena.bytes};
constexpr unsigned int kTensorArenaSize64 = {arena.bytes_64};
constexpr unsigned int kTensorArenaSize =
    sizeof(void*) <= 4 ? kTensorArenaSize32 : kTensorArenaSize64;

// Distinct ops the model uses: {ops}.
constexpr int kNumOps = {len(methods)};

// Registers exactly the model's ops; true on success:
//   static tflite::MicroMutableOpResolver<{name}::kNumOps> resolver;
//   if (!{name}::RegisterOps(resolver)) {{ /* error */ }}
template <typename OpResolver>
bool RegisterOps(OpResolver& resolver) {{
  return {calls};  // each Add*() returns kTfLiteOk (0) on success
}}

}}  // namespace {name}

#endif  // {guard}
"""


def render_source(data: bytes, *, name: str = "model") -> str:
    """The text of ``<name>_data.cc``: the array, exactly ``data``."""
    check_name(name)
    return f"""\
// Generated by tfcompress. Do not edit; regenerate instead.
#include "{name}_data.h"

namespace {name} {{

alignas(16) const unsigned char kModelData[] = {{
{_array_lines(data)}
}};
static_assert(sizeof(kModelData) == kModelDataSize, "array size");

}}  // namespace {name}
"""


def render_sources(tflite: bytes, *, arena: int | ArenaFigures,
                   info: ModelInfo | None = None, name: str = "model",
                   shipped: str = "the .tflite") -> dict[str, str]:
    """``{"<name>_data.h": ..., "<name>_data.cc": ...}``."""
    check_name(name)
    arena = arena if isinstance(arena, ArenaFigures) else from_bytes(arena)
    data = bytes(tflite)
    info = info or flatbuffer.read(data)
    return {f"{name}_data.h": render_header(info, name=name, arena=arena,
                                            data_bytes=len(data),
                                            shipped=shipped),
            f"{name}_data.cc": render_source(data, name=name)}


def write_sources(tflite: bytes, out_dir: str, *, arena: int | ArenaFigures,
                  info: ModelInfo | None = None, name: str = "model",
                  shipped: str = "the .tflite") -> list[str]:
    """Write ``<name>_data.h`` and ``<name>_data.cc`` into ``out_dir``.

    Args:
        tflite: the exact model bytes to embed (the model that ships).
        out_dir: folder (created if missing).
        arena: measured figures (:func:`converters.targets.micro_arena.
            measure`) or a fixed byte count.
        info: the parsed model, when the caller has it.
        name: C++ namespace and file prefix.
        shipped: what the bytes are, for the header's first line (e.g.
            ``model_lut.tflite (LUT-encoded weights)``).

    Returns:
        The two paths written, header first.

    Raises:
        MicroError: an op has no TFLM resolver method.
        ValueError: ``name`` is not a usable identifier or the arena <= 0;
            nothing is written then.
    """
    texts = render_sources(tflite, arena=arena, info=info, name=name,
                           shipped=shipped)
    return [write_text(os.path.join(out_dir, fname), text)
            for fname, text in texts.items()]
