"""What the commands share to read the user's model and data: the
``--import`` option (the user's modules with custom layers), and loading
MODEL with DATA.npz arranged per model input and output.
"""

from __future__ import annotations

import click

__all__ = ["data_for", "import_modules", "import_option",
           "load_model_and_data", "unroll_option"]


def import_option(fn):
    """``--import MODULE`` (repeatable): import the user's module before
    loading, so its registered custom layers are known."""
    return click.option(
        "--import", "imports", multiple=True, metavar="MODULE",
        help="Import MODULE (a module name or a .py path) before loading "
             "MODEL, so the custom layers it registers load. Repeatable.")(fn)


def unroll_option(fn):
    """``--unroll``: unroll recurrent layers for int8 conversion."""
    return click.option(
        "--unroll", is_flag=True,
        help="Unroll GRU/LSTM/SimpleRNN layers over their time steps so they "
             "convert to int8, when one would become a loop; a model whose "
             "recurrent layers all fuse (tf_keras LSTM into "
             "UNIDIRECTIONAL_SEQUENCE_LSTM: smaller, and TFLM runs it) is "
             "left as it is.")(fn)


def import_modules(imports) -> None:
    if imports:
        from converters.loading.user_modules import import_modules as load
        load(imports)


def load_model_and_data(model_path: str, data_path: str, *, unsafe: bool,
                        imports=(), trains=None, unroll: bool = False):
    """``(model, x, y)``: the loaded model (a Keras model, or a SavedModel
    path) and DATA.npz arranged for it (:func:`for_model`). ``trains``
    (a command name): the model must have one input and one output.
    ``unroll``: the model with its looping recurrent layers unrolled
    (:func:`converters.conversion.recurrent.unrolled`)."""
    import_modules(imports)
    from tfcompress.pipeline import data as datasets
    arrays = datasets.read_npz(data_path)
    from converters import load_model
    model = load_model(model_path, allow_unsafe=unsafe)
    if trains:
        datasets.check_trainable_io(model, trains)
    if isinstance(model, str):  # a SavedModel directory: one input
        x, y = datasets.load_npz(data_path)
        return model, x, y
    x, y = datasets.for_model(arrays, model, data_path)
    if unroll:
        from converters.conversion.recurrent import unrolled
        model = unrolled(model)
    if trains == "sensitivity":
        datasets.check_classifier(model, y, trains)
    return model, x, y


def data_for(model, data_path: str):
    """``(x, y)`` of another DATA.npz (``--val``) arranged for ``model``."""
    from tfcompress.pipeline import data as datasets
    if isinstance(model, str):
        return datasets.load_npz(data_path)
    return datasets.for_model(datasets.read_npz(data_path), model, data_path)
