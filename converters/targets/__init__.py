"""Deployment targets and the artifacts each one ships.

Modules:
    micro: which models TFLM runs (op support, types) and the resolver calls.
    micro_emit: the C/C++ sources (model array, arena, resolver) for firmware.
    micro_example: the example main.cc, BUILD.md and Arduino library beside them.
    micro_arena: tensor-arena figures for a plain MicroInterpreter (32/64-bit).
    micro_ship: the one model a micro artifact ships; its arena, check, budget.
    budgets: microcontroller boards' flash and RAM, and whether a model fits.
    android: the Android artifact set (int8 and float16 variants, metadata).
    gpu: which ops the TFLite GPU delegate takes.
    android_plan: the Android task, I/O type and options, checked up front.
    android_metadata: standard TFLite Metadata per task (labels, normalization).
    metadata_pack: the metadata buffer and the associated-files zip in a .tflite.
"""
