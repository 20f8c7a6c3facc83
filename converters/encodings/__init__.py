"""Encodings of constant tensors that TFLM decodes at run time (DECODE op).

Modules:
    decode: the DCM header, the encodable constants, DECODE insertion.
    lut: look-up-table (LUT) compression of clustered weights.
    prune: kept-element bit mask plus kept values (sparse weights).
    huffman: prefix codes with multi-level decode tables (pruned and/or
        clustered weights: LUT and entropy coding in one).
    planner: per tensor none / LUT / PRUNE / HUFFMAN under flash and RAM
        budgets, arenas measured in TFLM, outputs proven bit-identical.
"""
