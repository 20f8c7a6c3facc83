"""Side-by-side benchmarks of tfcompress; writes BENCHMARKS.md.

    python -m benchmarks.run --out BENCHMARKS.md       (``make bench``)

Everything is measured in one run, on the same data and the same trained
float model: size, accuracy, TFLM flash and arena, LiteRT latency for the
digits pipelines (float32, plain PTQ, plain tfmot PQAT, tfcompress prune+QAT
and PCQAT), the sine model, a MobileNet-style 96x96x3 model (random weights,
size and latency only), per-step training overhead of each wrapper, and
conversion / validation / CLI start-up times. Targets are reported as met or
not met with the measured ratio; none is asserted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import log  # noqa: E402
from benchmarks.digits import bench_digits  # noqa: E402
from benchmarks.lowbit import bench_lowbit  # noqa: E402
from benchmarks.mobilenet import bench_mobilenet  # noqa: E402
from benchmarks.overhead import bench_overhead  # noqa: E402
from benchmarks.report import write_md  # noqa: E402
from benchmarks.sine import bench_sine  # noqa: E402
from benchmarks.structured import bench_structured  # noqa: E402
from benchmarks.times import bench_times  # noqa: E402

#: sections appended after the core tables: module names under benchmarks/,
#: each with ``run(res: dict) -> None`` (measure, store in ``res``) and
#: ``markdown(res: dict) -> str`` (its section of BENCHMARKS.md)
SECTIONS: list = []

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--sine-epochs", type=int, default=None,
                        help="default: the sample's EPOCHS")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["sine", "mobilenet", "overhead", "times",
                                 "structured", "lowbit", *SECTIONS])
    args = parser.parse_args(argv)
    from sample_models import sine
    started = time.perf_counter()
    res: dict = {}
    bench_digits(res)
    if "sine" not in args.skip:
        bench_sine(res, args.sine_epochs or sine.EPOCHS)
    if "mobilenet" not in args.skip:
        bench_mobilenet(res)
    if "structured" not in args.skip:
        bench_structured(res)
    if "lowbit" not in args.skip:
        bench_lowbit(res)
    if "overhead" not in args.skip:
        bench_overhead(res)
    if "times" not in args.skip:
        bench_times(res)
    extra = []
    for name in SECTIONS:
        if name in args.skip:
            continue
        section = importlib.import_module(f"benchmarks.{name}")
        log(f"section {name}")
        section.run(res)
        extra.append(section.markdown(res))
    elapsed = time.perf_counter() - started
    note = (f"Sections left out in this run: {', '.join(args.skip)}."
            if args.skip else "")
    table, targets, _ = write_md(args.out, res, elapsed, note)
    if extra:
        with open(args.out, "a") as f:
            f.write("\n" + "\n\n".join(extra) + "\n")
    print(table)
    print()
    print(targets)
    log(f"wrote {args.out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
