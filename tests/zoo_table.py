"""Regenerate docs/ZOO.md: every zoo model (tests/zoo.py) through every
command, one CLI process per run, as a user runs them.

    python tests/zoo_table.py                     # small zoo, Keras 3 + .h5
    python tests/zoo_table.py --full              # all 14, double width
    python tests/zoo_table.py --commands micro    # one command only

Each cell: the result (pass / FAIL: the first words of the one-line error /
TRACEBACK), the .tflite bytes, the measured TFLM arena, the metric that
decided, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import zoo  # noqa: E402

COMMANDS = {
    "micro": ["convert", "--target", "micro"],
    "android": ["convert", "--target", "android"],
    "prune_qat": ["optimize", "--recipe", "prune_qat", "--target", "micro"],
    "sensitivity": ["sensitivity", "--max-bytes", "100000"],
}
OPTIONS = {"custom": ["--import", "zoo_layers"], "lambda": ["--unsafe"],
           "gru": ["--unroll"], "lstm": ["--unroll"]}
_CONVERTING = ("micro", "android", "prune_qat", "sensitivity")  # --unroll


def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE])
    return env


def build(folder: str, full: bool) -> None:
    for gen in (3, 2):
        args = [sys.executable, os.path.join(HERE, "zoo.py"), str(gen),
                folder] + (["--full"] if full else [])
        subprocess.run(args, check=True, env=_env(), cwd=HERE,
                       capture_output=True)


def run(model: str, data: str, command: str, out: str) -> dict:
    name = os.path.basename(model).split(".")[0]
    extra = [o for o in OPTIONS.get(name, [])
             if o != "--unroll" or command in _CONVERTING]
    verb, *rest = COMMANDS[command]
    args = [sys.executable, "-m", "tfcompress.cli", verb, model, *rest,
            "--data", data, "--out", out, *extra]
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(),
                          cwd=HERE)
    cell = {"seconds": round(time.perf_counter() - started, 1)}
    errors = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
    if "Traceback" in proc.stderr or proc.returncode not in (0, 1):
        cell["result"] = f"TRACEBACK (exit {proc.returncode})"
    elif proc.returncode:
        cell["result"] = "FAIL: " + (errors[-1][7:] if errors else "?")
    else:
        cell["result"] = "pass"
    report = os.path.join(out, "report.json")
    if os.path.exists(report):
        with open(report) as f:
            rep = json.load(f)
        cell["bytes"] = rep.get("tflite", {}).get("bytes")
        val = rep.get("validation", {})
        cell["arena"] = val.get("micro", {}).get("arena_bytes")
        outputs = val.get("litert", {}).get("outputs") or {}
        cell["metric"] = ", ".join(
            f"{v['task']} {v['metric']} {v['value']:.3g}"
            for v in outputs.values() if v.get("metric")) or None
    return cell


def _fmt(cell: dict) -> str:
    parts = [cell["result"].replace("|", "/")[:140]]
    for key, unit in (("bytes", " B"), ("arena", " B arena")):
        if cell.get(key):
            parts.append(f"{cell[key]:,}{unit}")
    if cell.get("metric"):
        parts.append(cell["metric"])
    parts.append(f"{cell['seconds']} s")
    return "; ".join(parts)


def table(rows: list, commands: list) -> str:
    lines = ["| model | file | " + " | ".join(commands) + " |",
             "|---|---|" + "---|" * len(commands)]
    for name, file, cells in rows:
        lines.append(f"| {name} | {file} | " + " | ".join(
            _fmt(cells[c]) for c in commands) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--zoo", default=None,
                        help="an already built zoo folder")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs",
                                                      "ZOO.md"))
    args = parser.parse_args(argv)
    commands = [c for c in args.commands.split(",") if c]
    work = tempfile.mkdtemp(prefix="zoo_")
    folder = args.zoo or os.path.join(work, "models")
    if args.zoo is None:
        build(folder, args.full)
    rows = []
    names = list(zoo.MODELS) if args.full else list(zoo.SMALL)
    for name in names:
        for ext in (".keras", ".h5"):
            model = os.path.join(folder, name + ext)
            if not os.path.exists(model):
                continue
            data = os.path.join(folder, name + ".npz")
            cells = {c: run(model, data, c, os.path.join(work, name + ext
                                                         + c))
                     for c in commands}
            rows.append((name, os.path.basename(model), cells))
            print(name, ext, {c: cells[c]["result"][:60] for c in commands},
                  flush=True)
            _write(args, names, rows, commands, done=False)
    _write(args, names, rows, commands, done=True)
    print(f"wrote {args.out}")
    return 0


def _write(args, names, rows, commands, done: bool) -> None:
    """The page as it stands (rewritten after every row, so a long run
    leaves its finished rows)."""
    partial = "" if done else (
        f"**Partial: {len(rows)} rows so far; the run was still going when "
        "this was written.**\n\n")
    text = ("# Model zoo: ordinary models through every command\n\n"
            "Generated by `python tests/zoo_table.py"
            + (" --full" if args.full else "") + "` (tests/zoo.py builds the "
            "models: tiny widths, synthetic learnable data). Each cell: "
            "result; .tflite bytes; measured TFLM arena; per output, the task "
            "and the LiteRT metric that decided its verdict; "
            "wall time of the CLI process. A FAIL is the one-line error the "
            "user sees.\n\n" + "\n".join(
                f"- **{n}**: {zoo.MODELS[n]}" for n in names) + "\n\n"
            + partial + table(rows, commands) + "\n")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        f.write(text)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    sys.exit(main())
