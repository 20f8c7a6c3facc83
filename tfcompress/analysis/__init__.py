"""Analysis of models under compression.

Modules:
    stats: per-layer sparsity and unique-weight counts of any Keras model.
    sensitivity: per-layer sensitivity sweeps, and per-layer settings that
        meet a byte or accuracy budget.
    mixed_precision: weight bits per layer (8/4/2/1 via LUT) under a
        flash or accuracy budget, written as a recipe.
    precision: int8/int16 activations (and android float fallback) per
        layer, measured with ai-edge-quantizer under a budget.
    precision_plot: size vs accuracy of the uniform choices and the mix.
    precision_run: plan, apply, validate and write in one call (the CLI).
"""
