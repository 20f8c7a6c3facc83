"""The staged pipeline: recipes, stages, the end-to-end jobs, data, distribution.

Modules:
    recipe: the declarative ``Recipe`` (YAML / JSON / dict / built-in names).
    stages: ``compress``: run a recipe's stages on a model, with checkpoints.
    training: how each stage fine-tunes: loss, learning rate and schedule,
        best-epoch restore, BatchNorm, epochs scaled by data size.
    verdict: the accuracy guard against the float model and int8 PTQ.
    jobs: the jobs behind the CLI and ``make tflite``: compress, convert,
        validate, write the artifact set and reports.
    file_jobs: jobs on a user's .tflite: read (verified), inspect, bench,
        validate.
    data: load and check user data (``DATA.npz``), per input and output.
    targets: what ``optimize`` trains against (labels, regression targets,
        or the float model's outputs) and with which loss.
    splits: which rows train and which validate (all data trains without
        ``--val``; a seeded holdout restores best epochs and the guard).
    distribute: ``tf.distribute`` strategies by name; who writes files.
    recipes/: the built-in recipe files.
"""
