"""Child process that runs a model in the TFLM interpreter.

Started by :mod:`converters.runtimes.tflm` as
``python -m converters.runtimes.tflm_worker COMMAND ...``; never imported by the
toolkit itself, so that a TFLM crash (SIGSEGV on an undersized arena) takes
down only this process. It imports numpy and tflite_micro, nothing heavier.

Commands::

    probe MODEL ARENA N_INPUTS [--report]
        allocate with ARENA bytes and invoke once on zeros; with --report,
        print TFLM's arena accounting to stderr.
    serve MODEL N_INPUTS TIMEOUT
        probe server for arena bisection: reads one arena size per line
        from stdin, forks a child that probes it (so a crash kills only
        that child; SIGALRM after TIMEOUT seconds ends a hang) and answers
        one line with the child's exit status (0 ok, 3 refused, -N signal).
    run MODEL ARENA N_INPUTS N_OUTPUTS IN.npz OUT.npz
        IN.npz holds in_0..in_{N_INPUTS-1}, each [N, ...]; one invoke per
        sample; OUT.npz receives out_0..out_{N_OUTPUTS-1}, each [N, ...].

Exit status: 0 success, 3 TFLM refused (message on stderr after
``micro-worker:``), 2 bad usage.
"""

import os
import sys

import numpy as np


def _interpreter(model_path: str, arena: int):
    from tflite_micro import runtime
    with open(model_path, "rb") as f:
        model = f.read()
    return runtime.Interpreter.from_bytes(model, arena_size=arena)


def _probe(model_path: str, arena: int, n_inputs: int, report: bool) -> None:
    interp = _interpreter(model_path, arena)
    for k in range(n_inputs):
        d = interp.get_input_details(k)
        interp.set_input(np.zeros(d["shape"], d["dtype"]), k)
    interp.invoke()
    if report:
        sys.stderr.flush()
        interp.print_allocations()


def _serve(model_path: str, n_inputs: int, timeout: int) -> None:
    from tflite_micro import runtime  # noqa: F401 - import once, fork often

    from converters.runtimes.childproc import serve
    serve(lambda line: _probe(model_path, int(line), n_inputs, False),
          timeout_of=lambda line: timeout)


def _run(model_path: str, arena: int, n_inputs: int, n_outputs: int,
         in_path: str, out_path: str) -> None:
    interp = _interpreter(model_path, arena)
    with np.load(in_path) as data:
        xs = [data[f"in_{k}"] for k in range(n_inputs)]
    details = [interp.get_input_details(k) for k in range(n_inputs)]
    outs = [[] for _ in range(n_outputs)]
    from converters import progress
    if not os.environ.get(progress.ENV_FILE):
        progress.set_verbosity(0)   # stderr is for errors here
    with progress.bar(xs[0].shape[0], "TFLM", unit="sample") as p:
        for i in range(xs[0].shape[0]):
            _invoke_one(interp, xs, details, i, outs, n_outputs)
            p.update()
    np.savez(out_path, **{f"out_{k}": np.stack(o) for k, o in enumerate(outs)})


def _invoke_one(interp, xs, details, i, outs, n_outputs) -> None:
    """Sample ``i`` of every input in, one invoke, each output appended."""
    for k, (x, d) in enumerate(zip(xs, details)):
        interp.set_input(
            np.ascontiguousarray(x[i].reshape(d["shape"]), d["dtype"]), k)
    interp.invoke()
    for k in range(n_outputs):
        y = np.array(interp.get_output(k), copy=True)
        outs[k].append(y.reshape(y.shape[1:]) if y.ndim > 1 and
                       y.shape[0] == 1 else y)


def main(argv) -> int:
    try:
        cmd = argv[0]
        if cmd == "probe":
            _probe(argv[1], int(argv[2]), int(argv[3]), "--report" in argv)
        elif cmd == "serve":
            _serve(argv[1], int(argv[2]), int(argv[3]))
        elif cmd == "run":
            _run(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5],
                 argv[6])
        else:
            raise IndexError(cmd)
    except (IndexError, ValueError) as exc:
        if isinstance(exc, ValueError) and argv and argv[0] in ("probe", "run",
                                                                "serve"):
            print(f"micro-worker: {exc}", file=sys.stderr)
            return 3
        print(f"micro-worker: usage: probe|serve|run ... ({exc})",
              file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"micro-worker: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
