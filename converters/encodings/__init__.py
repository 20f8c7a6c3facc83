"""Encodings of constant tensors that TFLM decodes at run time (DECODE op).

Modules:
    lut: look-up-table (LUT) compression of clustered weights.
"""
