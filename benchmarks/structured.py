"""Structured compression: channel pruning and low rank."""

from __future__ import annotations

import numpy as np

from benchmarks.common import (
    LATENCY_RUNS,
    clone,
    digits_base,
    fmt,
    log,
    tf_convert,
)


def bench_structured(res: dict, runs: int = LATENCY_RUNS) -> None:
    """Channel pruning 50% of a MobileNet-style 96x96x3 model (random
    weights): params, MACs, int8 bytes, LiteRT latency (1 thread,
    interleaved) before/after; and channel pruning / low-rank rows on digits
    (params, accuracy after a brief fine-tune)."""
    from converters.runtimes import litert
    from sample_models import digits, mobilenet_style
    from tfcompress.keras2 import channel_pruning, lowrank
    model = mobilenet_style.build_model((96, 96, 3))
    small, rep = channel_pruning.prune_channels(model, 0.5, "l1")
    calib = np.random.default_rng(0).uniform(
        0, 1, (64, 96, 96, 3)).astype(np.float32)
    log(f"structured: mobilenet-style channel pruning 50%, int8, {runs} "
        "interleaved LiteRT runs")
    rows = channel_pruning.compare_deployed(
        {"unpruned": model, "channel-pruned 50% (l1)": small}, calib,
        runs=runs, threads=(1,))
    for name, row in rows.items():
        out = litert.run(row["tflite"], calib[:4]).outputs  # runs in LiteRT
        row["runs_in_litert"] = bool(out.shape == (4, 10)
                                     and np.isfinite(out).all())
        t = row.pop("latency")[1]
        row["lat"] = (t["median_ms"], t["p90_ms"])
        row.pop("tflite")
    res["structured_mobilenet"] = {"rows": rows, "groups": rep.groups}

    (x, y), (xt, yt) = digits.load_data()
    base = digits_base(res, "structured")
    ft = 3

    def acc(m):
        return float(np.mean(np.argmax(m.predict(xt, verbose=0), -1) == yt))

    def tuned(m):
        digits.compile_model(m)
        m.fit(x, y, epochs=ft, batch_size=digits.BATCH_SIZE, verbose=0)
        return acc(m)

    log(f"structured: digits channel pruning 50% and low rank, {ft} epochs "
        "fine-tune each")
    drows = {"float (no structured compression)": {
        "params": int(base.count_params()),
        "macs": channel_pruning.count_macs(base), "acc": acc(base),
        "acc_ft": None}}
    cp_model, _ = channel_pruning.prune_channels(clone(base), 0.5, "l1")
    drows["channel-pruned 50% (l1)"] = {
        "params": int(cp_model.count_params()),
        "macs": channel_pruning.count_macs(cp_model), "acc": acc(cp_model)}
    drows["channel-pruned 50% (l1)"]["acc_ft"] = tuned(cp_model)
    models = {"float (no structured compression)": base,
              "channel-pruned 50% (l1)": cp_model}
    for key, value in (("energy", 0.9), ("rank", 16)):
        lr_model, lr_rep = lowrank.factorize(clone(base), **{key: value})
        ranks = ", ".join(f"{e['name']} rank {e['rank']}"
                          for e in lr_rep.layers if e["status"] == "compressed")
        name = f"low rank, {key} {value} ({ranks})"
        drows[name] = {"params": int(lr_model.count_params()),
                       "macs": channel_pruning.count_macs(lr_model),
                       "acc": acc(lr_model)}
        drows[name]["acc_ft"] = tuned(lr_model)
        models[name] = lr_model
    for name, m in models.items():
        drows[name]["bytes"] = len(tf_convert(m, x, mode="int8"))
    res["structured_digits"] = {"rows": drows, "epochs": ft}


def render_structured(res: dict) -> str:
    """Markdown for :func:`bench_structured` (empty when it did not run)."""
    mb = res.get("structured_mobilenet")
    if not mb:
        return ""
    out = ["| MobileNet-style 96x96x3 (random weights) | params | MACs | "
           "int8 bytes | LiteRT latency median / p90 ms (1 thread) | "
           "runs in LiteRT |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, r in mb["rows"].items():
        out.append(f"| {name} | {fmt(r['params'])} | {fmt(r['macs'])} | "
                   f"{fmt(r['bytes'])} | {r['lat'][0]:.3f} / {r['lat'][1]:.3f}"
                   f" | {'yes' if r['runs_in_litert'] else 'no'} |")
    base, cut = list(mb["rows"].values())
    out.append(f"| ratio pruned / unpruned | "
               f"{cut['params'] / base['params']:.3f} | "
               f"{cut['macs'] / base['macs']:.3f} | "
               f"{cut['bytes'] / base['bytes']:.3f} | "
               f"{cut['lat'][0] / base['lat'][0]:.3f} | |")
    dg = res.get("structured_digits")
    if dg:
        out += ["", f"| digits (trained float model) | params | MACs | "
                f"int8 bytes | accuracy (no fine-tune) | accuracy after "
                f"{dg['epochs']} epochs fine-tune |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in dg["rows"].items():
            tuned = "-" if r["acc_ft"] is None else f"{r['acc_ft']:.4f}"
            out.append(f"| {name} | {fmt(r['params'])} | {fmt(r['macs'])} | "
                       f"{fmt(r['bytes'])} | {r['acc']:.4f} | {tuned} |")
    return "\n".join(out)


