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
    run MODEL ARENA N_INPUTS N_OUTPUTS IN.npz OUT.npz [--sequences]
        IN.npz holds in_0..in_{N_INPUTS-1}, each [N, ...]; one invoke per
        sample; OUT.npz receives out_0..out_{N_OUTPUTS-1}, each [N, ...].
        With --sequences (stateful models) each is [S, T, ...]: one invoke
        per step, and the interpreter's reset() (state back to what Init and
        Prepare left, as on power-up) between sequences.

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
         in_path: str, out_path: str, sequences: bool = False) -> None:
    interp = _interpreter(model_path, arena)
    with np.load(in_path) as data:
        xs = [data[f"in_{k}"] for k in range(n_inputs)]
    if not sequences:
        xs = [x[None] for x in xs]  # one sequence; no state to reset
    details = [interp.get_input_details(k) for k in range(n_inputs)]
    outs = [[] for _ in range(n_outputs)]
    from converters import progress
    if not os.environ.get(progress.ENV_FILE):
        progress.set_verbosity(0)   # stderr is for errors here
    n_seq, n_steps = xs[0].shape[0], xs[0].shape[1]
    with progress.bar(n_seq * n_steps, "TFLM", unit="sample") as p:
        for s in range(n_seq):
            if s:
                interp.reset()
            steps = [[] for _ in range(n_outputs)]
            for i in range(n_steps):
                _invoke_one(interp, [x[s] for x in xs], details, i, steps,
                            n_outputs)
                p.update()
            for k in range(n_outputs):
                outs[k].append(np.stack(steps[k]))
    np.savez(out_path, **{f"out_{k}": np.stack(o) if sequences else o[0]
                          for k, o in enumerate(outs)})


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


def _limit() -> None:
    """Cap this process (it reads a user's model) once TFLM is imported."""
    import os

    from tflite_micro import runtime  # noqa: F401 - counted in the start

    from converters.runtimes.childproc import limit_resources
    limit_resources(float(os.environ.get("TFCOMPRESS_CHILD_CPU", 0)) or None)


def main(argv) -> int:
    try:
        cmd = argv[0]
        if cmd in ("probe", "run"):
            _limit()
        if cmd == "probe":
            _probe(argv[1], int(argv[2]), int(argv[3]), "--report" in argv)
        elif cmd == "serve":
            _serve(argv[1], int(argv[2]), int(argv[3]))
        elif cmd == "run":
            _run(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5],
                 argv[6], "--sequences" in argv)
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
    except (RuntimeError, MemoryError) as exc:
        print(f"micro-worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
