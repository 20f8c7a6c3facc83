"""Reading .tflite flatbuffers.

Modules:
    flatbuffer: a .tflite as plain Python (ops, tensors, dtypes, sizes).
    native_verify: LiteRT's C++ flatbuffers verifier, in a child, first.
    verify: structural checks before any interpreter sees a file.
    inspect: what is inside any .tflite (``tfcompress inspect``).
"""
