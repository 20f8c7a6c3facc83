"""Compression techniques for Keras 2 (``tf_keras``) models, on tfmot.

tensorflow-model-optimization 0.8.1 binds to ``tf_keras``; this package is the
Keras 2 path. Keras 3 models go to :mod:`tfcompress.keras3`.

Modules:
    env: the one import of ``tf_keras``, TensorFlow and tfmot for this path.
    pruning: magnitude pruning (``prune`` / ``strip_pruning``), 2:4 sparsity.
    schedules: sparsity schedules (constant, polynomial).
    clustering: weight clustering (``cluster`` / ``strip_clustering``).
    quantization: quantization-aware training, PQAT/CQAT/PCQAT.
    fakequant: a faster activation fake-quant for QAT (tfmot's values and
        gradients, one pass).
    lowbit: binary/ternary and n-bit weights (straight-through estimator).
    lowbit_export: per-channel value counts and TFLM LUT export of low-bit models.
    channel_graph: which filters of which layers must be cut together.
    channel_pruning: structured (filter) pruning that shrinks the model.
    lowrank: low-rank factorization of Dense / 1x1 Conv kernels.
    distill: knowledge distillation (``Distiller``).
    callbacks: the ``model.fit`` callbacks a wrapped model needs.
    unwrap: ``strip`` for every wrapper and the scope that loads saved ones.
    selection: which layers a technique touches, and why others are skipped.
    nesting: inline nested models into one flat graph.
    call_args: wrappers of layers called with several inputs (MultiHeadAttention).
"""
