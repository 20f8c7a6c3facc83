"""Conversion: Keras model -> .tflite bytes -> a checked, validated artifact.

Modules:
    modes: ``convert_bytes`` per target and quantization mode (int8, float16,
        dynamic, int16x8, float32, int4), ``MODES``, ``TARGETS``.
    artifact: ``convert`` and ``Artifact`` (check, validate, save).
    app_io: the I/O types app runtimes accept (uint8 images on the pixel grid).
    signature: the serving function a Keras model (either generation) is
        traced to, with a fixed batch of 1, and its inputs by name.
    recurrent: GRU/LSTM/SimpleRNN: fused, unrolled (``--unroll``) or refused
        by name before the converter would build a loop.
    frozen: the frozen, constant-folded function an unrolled model is
        converted from (its signature kept; no gate SPLIT left float).
    int8_forms: Keras 3 LayerNormalization and Embedding traced without the
        float-only ops (NEG, SELECT) TFLM lacks.
    precision: per-layer activation precision (int8, int16x8, float) applied
        with ai-edge-quantizer recipes.
"""
