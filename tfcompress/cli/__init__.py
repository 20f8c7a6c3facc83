"""The ``tfcompress`` command line (click): parse, call the library, print.

Modules:
    main: the command group and its commands (optimize, convert, validate,
        inspect, bench, sensitivity).
    printing: the result summary and the mixed-precision plan it prints.
    judging: ``--task`` / ``--tolerance`` and the per-output verdict lines.
    model_input: ``--import``, ``--unroll``, and MODEL with DATA.npz
        arranged per input and output.

``tfcompress --help`` imports no TensorFlow: commands import the library
inside their bodies.
"""

from tfcompress.cli.main import main

__all__ = ["main"]
