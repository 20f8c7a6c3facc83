"""Loading users' model files.

Modules:
    kerasenv: the one import of TensorFlow and ``tf_keras`` in the converters.
    formats: what a model file is, from its content (zip, HDF5, SavedModel).
    codescan: ``check_safe``: code-carrying objects (Lambda, serialized
        functions, custom objects, PyFunc ops) found before any loader runs.
    models: ``load_model`` for ``.keras`` / ``.h5`` / SavedModel; calls
        ``check_safe`` first and picks the loader by the detected format.
    quiet: TensorFlow imported without its start-up log noise.
    keras3_files: Keras 3 ``.keras`` files rebuilt as ``tf_keras`` models.
"""
