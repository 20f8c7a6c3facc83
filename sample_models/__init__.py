"""Small real models and their data loaders, used by ``make tflite``, the
tests and the benchmarks. Each module has ``load_data``, ``build_model``,
``compile_model``, ``EPOCHS``, ``BATCH_SIZE``, ``LABELS`` and ``RECIPE``
(a file in ``recipes/`` or ``None``)."""

from sample_models import digits, sine

SAMPLES = {"digits": digits, "sine": sine}
