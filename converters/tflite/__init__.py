"""Reading .tflite flatbuffers.

Modules:
    flatbuffer: a .tflite as plain Python (ops, tensors, dtypes, sizes).
    verify: structural checks before any interpreter sees a file.
    inspect: what is inside any .tflite (``tfcompress inspect``).
"""
