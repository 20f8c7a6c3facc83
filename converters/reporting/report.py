"""Reports: ``report.json`` (machine), ``report.md`` (tables), ``report.html``
(one self-contained page, :mod:`converters.reporting.html`) and plots.

:func:`write` takes the report dict an artifact built (``converters``) plus
what training added (stages, variants) and writes them all into a folder.
"""

from __future__ import annotations

import copy
import os
import platform

from converters.reporting import html, plots
from converters.reporting.arena_rows import shipped_arena_rows
from converters.files import atomic_write, atomic_write_json


def tool_versions() -> dict:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("tfcompress", "tensorflow", "tf-keras",
                 "tensorflow-model-optimization", "ai-edge-litert",
                 "tflite-micro"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if unit == "%" else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(report: dict, images: dict) -> str:
    lite = report.get("tflite", {})
    val = report.get("validation", {})
    lines = [f"# {report.get('name', 'model')}: {report.get('target')} "
             f"({report.get('mode')})", ""]
    verdict = "passed" if val.get("passed") else "FAILED"
    lines += [f"Validation **{verdict}**.", "", "| | value |", "|---|---|"]
    rows = [
        ("float .tflite bytes", report.get("float", {}).get("bytes")),
        (".tflite bytes", lite.get("bytes")),
        ("gzip bytes", lite.get("gzip_bytes")),
        ("input / output dtype", f"{lite.get('input', {}).get('dtype')} / "
                                 f"{lite.get('output', {}).get('dtype')}"),
        ("ops", ", ".join(lite.get("ops", []))),
        ("Keras accuracy", _fmt(report.get("keras", {}).get("accuracy"), "%")),
        ("LiteRT accuracy", _fmt(val.get("litert", {}).get("accuracy"), "%")),
        ("LiteRT agreement with float",
         _fmt(val.get("litert", {}).get("agreement"), "%")),
    ]
    micro = val.get("micro")
    if micro:
        rows += [("TFLM agreement with LiteRT", _fmt(micro.get("agreement"), "%")),
                 ("TFLM max diff (LSB)", micro.get("max_abs_lsb")),
                 *shipped_arena_rows(report),
                 ("plain model arena, Python runtime (64-bit, minimum)",
                  micro.get("arena_bytes")),
                 ("plain model arena, Python runtime (64-bit, + margin)",
                  micro.get("arena_recommended"))]
    for key, value in rows:
        if value not in (None, "None / None"):
            lines.append(f"| {key} | {_fmt(value) if not isinstance(value, str) else value} |")
    lines += verdict_lines(val)
    if report.get("comparison"):
        lines += ["", *_comparison(report["comparison"])]
    if report.get("variants"):
        lines += ["", "## Variants", "", "| variant | bytes | accuracy |",
                  "|---|---|---|"]
        for v in report["variants"]:
            lines.append(f"| {v['name']} | {_fmt(v.get('bytes'))} | "
                         f"{_fmt(v.get('accuracy'), '%')} |")
    if report.get("stages"):
        lines += ["", "## Stages", "",
                  "| stage | epochs | sparsity | max unique | seconds |",
                  "|---|---|---|---|---|"]
        for s in report["stages"]:
            lines.append(f"| {s['stage']}: {s['kind']}"
                         f"{' (' + s['scheme'] + ')' if s.get('scheme') else ''}"
                         f" | {s['epochs']} | {_fmt(s['sparsity'], '%')} | "
                         f"{s['max_unique']} | {s['seconds']} |")
    enc = report.get("encodings")
    if enc:
        lines += ["", "## Weight encodings (TFLM DECODE)", "", enc["message"]
                  + f" (plain int8: {_fmt(enc['plain_flash'])} B flash, "
                  f"{_fmt(enc['plain_arena'])} B arena).", "",
                  "| tensor | encoding | bytes before | bytes after | "
                  "decoded bytes in RAM | why |", "|---|---|---|---|---|---|"]
        for t in enc["tensors"]:
            lines.append(f"| {t['name']} | {t['encoding']} | "
                         f"{_fmt(t['bytes_before'])} | {_fmt(t['bytes_after'])}"
                         f" | {_fmt(t['decoded_ram'])} | {t['why']} |")
    from converters.targets.micro_ship import report_lines
    lines += report_lines(report.get("micro"))
    if report.get("budgets"):
        lines += ["", "## Device budgets", "",
                  "| device | fits | RAM headroom B | flash headroom B |",
                  "|---|---|---|---|"]
        for name, fit in report["budgets"].items():
            lines.append(f"| {name} | {'yes' if fit['fits'] else 'no'} | "
                         f"{_fmt(fit['ram']['headroom'])} | "
                         f"{_fmt(fit['flash']['headroom'])} |")
    timing = report.get("latency", {}).get("models")
    if timing:
        threads = sorted({t for m in timing.values() for t in m["threads"]},
                         key=int)
        lines += ["", "## LiteRT latency (median / p90 ms)", "",
                  "| variant | bytes | " + " | ".join(
                      f"{t} thread{'s' if str(t) != '1' else ''}"
                      for t in threads) + " |",
                  "|---|---|" + "---|" * len(threads)]
        for name, m in timing.items():
            cells = [f"{m['threads'][t]['median_ms']:.4f} / "
                     f"{m['threads'][t]['p90_ms']:.4f}" for t in threads]
            lines.append(f"| {name} | {_fmt(m['bytes'])} | "
                         + " | ".join(cells) + " |")
    layers = lite.get("layers")
    if layers:
        lines += ["", "## Weights in the .tflite", "",
                  "| layer | dtype | shape | sparsity | unique |",
                  "|---|---|---|---|---|"]
        for l in layers:
            per = " per channel" if l["per_channel"] else ""
            lines.append(f"| {l['layer']} | {l['dtype']} | {l['shape']} | "
                         f"{_fmt(l['sparsity'], '%')} | {l['unique']}{per} |")
    if images:
        lines += ["", "## Plots", ""]
        for key, name in images.items():
            lines.append(f"![{key}]({name})")
    return "\n".join(lines) + "\n"


def verdict_lines(val: dict) -> list:
    """The per-output verdict table: which metric decided, its threshold,
    value and why (:mod:`converters.verdicts`)."""
    rows = []
    for runtime, label in (("litert", "LiteRT"), ("micro", "TFLM")):
        for name, v in (val.get(runtime, {}).get("outputs") or {}).items():
            op = ">=" if v.get("higher_is_better") else "<="
            rule = "–" if v.get("metric") is None else (
                f"{v['metric']} {_fmt(v['value'])} {op} "
                f"{_fmt(v['threshold'])}")
            why = v.get("why", "").replace("|", "/")
            rows.append(f"| {label} | {name} | {v['task']} "
                        f"({v.get('task_source', '')}) | {v['against']} | "
                        f"{rule} | {'passed' if v['passed'] else 'FAILED'} "
                        f"| {why} |")
    if not rows:
        return []
    return ["", "## Verdict per output", "",
            "| runtime | output | task (from) | against | rule | result "
            "| why |", "|---|---|---|---|---|---|---|"] + rows


#: (path in the report, key) of values measured with a clock
_TIMED = ((("validation", "litert"), "seconds"),
          (("validation", "micro"), "seconds"),
          (("validation", "micro_lut"), "seconds"))


def split_timings(report: dict) -> tuple[dict, dict]:
    """``(report without timings, timings)``: wall-clock numbers (``timings``,
    LiteRT ``latency``, validation and stage ``seconds``) differ run to run,
    so they go to ``timings.json`` and ``report.json`` of two identical
    seeded runs is byte-identical."""
    stable = copy.deepcopy(report)
    timings: dict = {}
    for key in ("timings", "latency"):
        if key in stable:
            timings[key] = stable.pop(key)
    for where, key in _TIMED:
        node = stable
        for part in where:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node:
            timings.setdefault(".".join(where), {})[key] = node.pop(key)
    for k, stage in enumerate(stable.get("stages") or []):
        if isinstance(stage, dict) and "seconds" in stage:
            timings.setdefault("stages", {})[str(k)] = {
                "seconds": stage.pop("seconds")}
    return stable, timings


def write(report: dict, out_dir: str) -> dict:
    """Write ``report.json`` (reproducible), ``timings.json`` (wall-clock
    numbers, see :func:`split_timings`), ``report.md`` and the PNG plots."""
    os.makedirs(out_dir, exist_ok=True)
    report.setdefault("versions", tool_versions())
    images = plots.write_all(report, out_dir)
    report["plots"] = images
    atomic_write(os.path.join(out_dir, "report.md"), markdown(report, images))
    atomic_write(os.path.join(out_dir, "report.html"),
                 html.render(report, images, out_dir))
    stable, timings = split_timings(report)
    atomic_write_json(os.path.join(out_dir, "report.json"), stable)
    atomic_write_json(os.path.join(out_dir, "timings.json"), timings)
    return images


_COMPARISON_ROWS = (
    ("accuracy", "accuracy", "%"), ("agreement", "agreement with float", "%"),
    ("bytes", ".tflite bytes", ""), ("gzip_bytes", "gzip bytes", ""),
    ("flash_bytes", "flash bytes (LUT when it validated)", ""),
    ("arena_bytes", "TFLM arena bytes", ""),
    ("latency_ms", "LiteRT latency ms (1 thread, median)", ""))


def _comparison(section: dict) -> list:
    """The compressed model beside the float model and int8 PTQ, and the
    accuracy guard's verdict (``report["comparison"]``)."""
    cols = ("float", "int8_ptq", "compressed")
    lines = ["## Compressed vs float vs int8 PTQ", "",
             "| | float | int8 PTQ | compressed |", "|---|---|---|---|"]
    for key, label, unit in _COMPARISON_ROWS:
        lines.append(f"| {label} | " + " | ".join(
            _fmt(section.get(c, {}).get(key), unit) for c in cols) + " |")
    verdict = section.get("verdict", {})
    data = section.get("data")
    if data:
        lines += ["", f"Data: {data.get('trained')} samples trained, "
                      f"{data.get('validated')} validated "
                      f"({data.get('validation')})."]
    if verdict:
        state = "passed" if verdict.get("passed") else "REJECTED"
        lines += ["", f"Accuracy guard **{state}**: at most "
                      f"{100 * verdict['max_drop']:g} point(s) below the float "
                      "model and below int8 PTQ."]
        if verdict.get("message"):
            lines.append(verdict["message"])
    return lines

