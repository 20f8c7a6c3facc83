"""``report.html``: one self-contained page a person reads in a browser.

The same report as ``report.md`` (:mod:`converters.reporting.report`): the
verdict in colour at the top, the tables, the plots embedded as data URIs
(the page needs no other file), and the commands that reproduce the run.
No JavaScript, no external fonts or styles: it renders offline, and a CI
log archive can keep it as one file.

Example:
    >>> page = html.render(report, {"size_vs_accuracy": "size_vs_accuracy.png"},
    ...                    "build/digits")
"""

from __future__ import annotations

import base64
import html as _html
import os
from typing import Dict, Iterable, List, Optional, Sequence

__all__ = ["render"]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 10px;
  border-bottom:1px solid #d8dce3;padding-bottom:4px}
.verdict{padding:14px 18px;border-radius:8px;font-size:18px;font-weight:600;
  margin:8px 0 18px;color:#fff}
.pass{background:#1f8a4c}.fail{background:#c0392b}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px;
  box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{border:1px solid #e1e4ea;padding:5px 10px;text-align:left;
  vertical-align:top}th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1f8a4c;font-weight:600}.bad{color:#c0392b;font-weight:600}
figure{display:inline-block;margin:8px 16px 8px 0;background:#fff;
  padding:8px;border:1px solid #e1e4ea;border-radius:6px}
figure img{max-width:480px;display:block}figcaption{font-size:13px;
  color:#5a6372;margin-top:4px}
pre{background:#1d2430;color:#e8ecf2;padding:12px 14px;border-radius:6px;
  overflow-x:auto;font-size:13px}
.muted{color:#5a6372;font-size:13px}
"""


def _e(value) -> str:
    return _html.escape("" if value is None else str(value))


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if unit == "%" else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(head: Sequence[str], rows: Iterable[Sequence], *,
           numeric: Sequence[int] = ()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
           + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{cell}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _img(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
    except OSError:
        return None
    return f"data:image/png;base64,{data}"


def _summary(report: dict) -> List[tuple]:
    lite = report.get("tflite", {})
    val = report.get("validation", {})
    lit = val.get("litert", {})
    rows = [
        ("float .tflite bytes", _fmt(report.get("float", {}).get("bytes"))),
        (".tflite bytes", _fmt(lite.get("bytes"))),
        ("gzip bytes", _fmt(lite.get("gzip_bytes"))),
        ("input / output dtype", f"{_e(lite.get('input', {}).get('dtype'))} / "
                                 f"{_e(lite.get('output', {}).get('dtype'))}"),
        ("ops", _e(", ".join(lite.get("ops", [])))),
        ("Keras accuracy", _fmt(report.get("keras", {}).get("accuracy"), "%")),
        ("LiteRT accuracy", _fmt(lit.get("accuracy"), "%")),
        ("LiteRT agreement with float", _fmt(lit.get("agreement"), "%")),
    ]
    micro = val.get("micro")
    if micro:
        from converters.reporting.arena_rows import shipped_arena_rows
        rows += [("TFLM agreement with LiteRT", _fmt(micro.get("agreement"), "%")),
                 ("TFLM max diff (LSB)", _fmt(micro.get("max_abs_lsb"))),
                 *[(_e(k), _fmt(v)) for k, v in shipped_arena_rows(report)],
                 ("plain model arena, Python runtime (64-bit, minimum)",
                  _fmt(micro.get("arena_bytes"))),
                 ("plain model arena, Python runtime (64-bit, + margin)",
                  _fmt(micro.get("arena_recommended")))]
    return [(k, v) for k, v in rows if v not in ("–", "None / None")]


def _sections(report: dict) -> List[str]:
    out = []
    if report.get("variants"):
        out.append("<h2>Variants</h2>" + _table(
            ("variant", "bytes", "accuracy"),
            ((_e(v["name"]), _fmt(v.get("bytes")), _fmt(v.get("accuracy"), "%"))
             for v in report["variants"]), numeric=(1, 2)))
    if report.get("stages"):
        out.append("<h2>Stages</h2>" + _table(
            ("stage", "epochs", "sparsity", "max unique", "seconds"),
            ((_e(f"{s['stage']}: {s['kind']}"
                 + (f" ({s['scheme']})" if s.get("scheme") else "")),
              _fmt(s.get("epochs")), _fmt(s.get("sparsity"), "%"),
              _fmt(s.get("max_unique")), _fmt(s.get("seconds")))
             for s in report["stages"]), numeric=(1, 2, 3, 4)))
    if report.get("budgets"):
        out.append("<h2>Device budgets</h2>" + _table(
            ("device", "fits", "RAM headroom B", "flash headroom B"),
            ((_e(name), f'<span class="{"ok" if fit["fits"] else "bad"}">'
                        f'{"yes" if fit["fits"] else "no"}</span>',
              _fmt(fit["ram"]["headroom"]), _fmt(fit["flash"]["headroom"]))
             for name, fit in report["budgets"].items()), numeric=(2, 3)))
    timing = report.get("latency", {}).get("models")
    if timing:
        threads = sorted({t for m in timing.values() for t in m["threads"]},
                         key=int)
        out.append("<h2>LiteRT latency (median / p90 ms)</h2>" + _table(
            ("variant", "bytes", *[f"{t} thread{'s' if str(t) != '1' else ''}"
                                   for t in threads]),
            ((_e(name), _fmt(m["bytes"]),
              *[f"{m['threads'][t]['median_ms']:.4f} / "
                f"{m['threads'][t]['p90_ms']:.4f}" for t in threads])
             for name, m in timing.items()),
            numeric=tuple(range(1, 2 + len(threads)))))
    layers = report.get("tflite", {}).get("layers")
    if layers:
        out.append("<h2>Weights in the .tflite</h2>" + _table(
            ("layer", "dtype", "shape", "sparsity", "unique"),
            ((_e(l["layer"]), _e(l["dtype"]), _e(l["shape"]),
              _fmt(l["sparsity"], "%"),
              f"{_fmt(l['unique'])}{' per channel' if l['per_channel'] else ''}")
             for l in layers), numeric=(3, 4)))
    return out


def _commands(report: dict) -> List[str]:
    cmds = report.get("commands")
    if cmds:
        return list(cmds)
    target, mode = report.get("target"), report.get("mode")
    name = report.get("name", "model")
    return [f"tfcompress convert MODEL --data DATA.npz --target {target} "
            f"--mode {mode} --out {name}"] if target else []


def render(report: dict, images: Dict[str, str], out_dir: str) -> str:
    """The page for ``report``; ``images`` maps plot keys to PNG file names
    inside ``out_dir`` (embedded, so the page stands alone)."""
    val = report.get("validation", {})
    passed = bool(val.get("passed"))
    title = (f"{report.get('name', 'model')}: {report.get('target')} "
             f"({report.get('mode')})")
    reason = val.get("reason") or val.get("message") or ""
    parts = [f"<h1>{_e(title)}</h1>",
             f'<div class="verdict {"pass" if passed else "fail"}" '
             f'id="verdict">Validation {"passed" if passed else "FAILED"}'
             f'{": " + _e(reason) if reason and not passed else ""}</div>',
             "<h2>Summary</h2>",
             _table(("", "value"), ((_e(k), v) for k, v in _summary(report)),
                    numeric=(1,))]
    parts += _sections(report)
    figures = []
    for key, name in (images or {}).items():
        uri = _img(os.path.join(out_dir, name))
        if uri:
            figures.append(f'<figure><img alt="{_e(key)}" src="{uri}">'
                           f"<figcaption>{_e(key.replace('_', ' '))}"
                           "</figcaption></figure>")
    if figures:
        parts.append("<h2>Plots</h2>" + "".join(figures))
    cmds = _commands(report)
    if cmds:
        parts.append("<h2>Reproduce</h2><pre>" + _e("\n".join(cmds))
                     + "</pre>")
    versions = report.get("versions")
    if versions:
        parts.append('<p class="muted">' + _e(", ".join(
            f"{k} {v}" for k, v in versions.items() if v)) + "</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><meta name=\"viewport\" "
            "content=\"width=device-width,initial-scale=1\">"
            f"<style>{_CSS}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>\n")
