"""Loading users' model files.

Modules:
    kerasenv: the one import of TensorFlow and ``tf_keras`` in the converters.
    formats: what a model file is, from its content (zip, HDF5, SavedModel).
    codescan: ``check_safe``: code-carrying objects (Lambda, serialized
        functions, custom objects, PyFunc ops) found before any loader runs.
    models: ``load_model`` for ``.keras`` / ``.h5`` / SavedModel; calls
        ``check_safe`` first and picks the loader by the detected format.
    generation: which Keras (3 or tf_keras) saved a file or built a model.
    keras3_models: Keras 3 ``.keras`` files loaded by Keras 3 itself.
    user_modules: ``--import``: the user's modules with custom layers.
    quiet: TensorFlow imported without its start-up log noise.
    keras3_files: opt-in translation of a Keras 3 file to ``tf_keras``
        (``tfcompress.load_keras3``), for the tfmot-only techniques.
"""
