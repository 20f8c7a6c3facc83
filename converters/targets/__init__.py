"""Deployment targets and the artifacts each one ships.

Modules:
    micro: which models TFLM runs (op support, types) and the resolver calls.
    micro_emit: the C/C++ sources (model array, arena, resolver) for firmware.
    budgets: microcontroller boards' flash and RAM, and whether a model fits.
    android: the Android artifact set (int8 and float16 variants, metadata).
    gpu: which ops the TFLite GPU delegate takes.
"""
