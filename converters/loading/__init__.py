"""Loading users' model files.

Modules:
    kerasenv: the one import of TensorFlow and ``tf_keras`` in the converters.
    models: ``load_model`` for ``.keras`` / ``.h5`` / SavedModel, with the code
        scan that refuses Lambda layers unless unsafe loading is allowed.
    quiet: TensorFlow imported without its start-up log noise.
    keras3_files: Keras 3 ``.keras`` files rebuilt as ``tf_keras`` models.
"""
