"""Reports: ``report.json`` (machine), ``report.md`` (tables), ``report.html``
(one self-contained page, :mod:`converters.reporting.html`) and plots.

:func:`write` takes the report dict an artifact built (``converters``) plus
what training added (stages, variants) and writes them all into a folder.
"""

from __future__ import annotations

import os
import platform

from converters.reporting import html, plots
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
                 ("plain model arena, Python runtime (64-bit, minimum)",
                  micro.get("arena_bytes")),
                 ("plain model arena, Python runtime (64-bit, + margin)",
                  micro.get("arena_recommended"))]
    for key, value in rows:
        if value not in (None, "None / None"):
            lines.append(f"| {key} | {_fmt(value) if not isinstance(value, str) else value} |")
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


def write(report: dict, out_dir: str) -> dict:
    """Write ``report.json``, ``report.md`` and the PNG plots."""
    os.makedirs(out_dir, exist_ok=True)
    report.setdefault("versions", tool_versions())
    images = plots.write_all(report, out_dir)
    report["plots"] = images
    atomic_write(os.path.join(out_dir, "report.md"), markdown(report, images))
    atomic_write(os.path.join(out_dir, "report.html"),
                 html.render(report, images, out_dir))
    atomic_write_json(os.path.join(out_dir, "report.json"), report)
    return images
