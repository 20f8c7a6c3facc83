"""The interpreters that run and validate a .tflite, each in a child process.

Modules:
    childproc: the one child-process runner (fork server, limits, exit codes).
    sandbox: run a function on a user's file in a child process.
    litert: run a .tflite in the LiteRT interpreter (Android's CPU runtime).
    latency: LiteRT latency (XNNPACK) per mode and thread count.
    metrics: compare a converted model's outputs with the float model
        (first output, legacy keys; verdicts live in converters.verdicts).
    feeds: a model's I/O tensors: names, quantizing data, streaming state.
    reference: the float reference's outputs, matched to the model's.
    validation: run in LiteRT (and TFLM), judge every output by its task.
    tflm: run a .tflite in TensorFlow Lite Micro; arena bisection; validation.
    tflm_arena: the smallest arena a model runs with, by bisection in TFLM.
    tflm_worker: the child process that hosts the TFLM interpreter.
    tflm_build: the host TFLM C++ library, built once per machine and cached.
    tflm_cpp: run a .tflite in that C++ build (arena bisection, outputs).
"""
