"""What the commands print: the result summary and the mixed-precision
plan (click.echo; the commands in :mod:`tfcompress.cli.main` call these)."""

from __future__ import annotations

import click

from tfcompress.cli import judging


def summary(report: dict) -> None:
    lite = report["tflite"]
    val = report["validation"]
    rows = [("tflite bytes", lite["bytes"]), ("gzip bytes", lite["gzip_bytes"]),
            ("input/output", f"{lite['input'].get('dtype')}/"
                             f"{lite['output'].get('dtype')}"),
            ("ops", ",".join(lite["ops"]))]
    if "float" in report:
        rows.insert(0, ("float32 bytes", report["float"]["bytes"]))
        if report["float"].get("accuracy") is not None:
            rows.append(("float accuracy", f"{report['float']['accuracy']:.4f}"))
    for key in ("accuracy", "agreement", "max_abs_error"):
        if key in val.get("litert", {}):
            rows.append((f"litert {key}", f"{val['litert'][key]:.4f}"))
    micro = val.get("micro")
    if micro and micro.get("agreement") is not None:
        rows += [("tflm agreement", f"{micro['agreement']:.4f}")]
    if micro:
        rows.append(("tflm max diff (LSB)", micro.get("max_abs_lsb")))
    shipped = report.get("micro")
    if shipped:   # the C array and the arena the firmware gets
        arena = shipped["arena"]
        rows += [("C array", f"{shipped['file']}, {shipped['array_bytes']} B"),
                 ("arena bytes (32-bit / 64-bit host)",
                  f"{arena['bytes']} / {arena['bytes_64']} ({arena['source']})")]
    elif micro and micro.get("arena_bytes") is not None:
        rows.append(("arena bytes (min / recommended)",
                     f"{micro['arena_bytes']} / {micro['arena_recommended']}"))
    budget = report.get("budget")
    if budget:
        rows.append((f"fits {budget['profile']}",
                     f"{budget['fits']} (RAM headroom {budget['ram']['headroom']} B,"
                     f" flash headroom {budget['flash']['headroom']} B)"))
    rows += judging.verdict_rows(report)
    rows.append(("validation", "passed" if val.get("passed") else "FAILED"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")



def sensitivity(model, x, y, max_bytes, max_accuracy_drop, epochs,
                out_dir) -> None:
    """``sensitivity`` (pruning and clustering): analyze, plan, write."""
    from tfcompress.analysis import sensitivity as sens
    result = sens.analyze(model, x, y)
    plan = sens.choose(model, result, x, y=y, max_bytes=max_bytes,
                       max_accuracy_drop=max_accuracy_drop)
    paths = sens.write(result, plan, out_dir, epochs=epochs)
    click.echo(f"baseline int8 gzip bytes  {plan.baseline_bytes}")
    click.echo(f"estimated gzip bytes      {plan.estimated_bytes}")
    click.echo(f"predicted accuracy drop   {plan.predicted_drop:.4f}")
    for key in ("recipe", "png", "json"):
        if key in paths:
            click.echo(f"{key:<26}{paths[key]}")


def mixed_precision(model, x, y, max_bytes, max_accuracy_drop, epochs,
                     out_dir) -> None:
    from tfcompress.analysis import mixed_precision as mixed
    result = mixed.analyze(model, x, y)
    plan = mixed.choose(model, result, x, y, max_bytes=max_bytes,
                        max_accuracy_drop=max_accuracy_drop)
    paths = mixed.write(result, plan, out_dir, epochs=epochs)
    click.echo("uniform weight bits       " + ", ".join(
        f"{b}: {u['bytes']} B {100 * u['accuracy']:.2f}%"
        for b, u in plan.uniform.items()))
    click.echo("chosen bits per layer     " + ", ".join(
        f"{n}={b}" for n, b in plan.bits.items()))
    click.echo(f"flash bytes (untrained)   {plan.measured_bytes}")
    click.echo(f"accuracy drop (untrained) {plan.measured_drop:.4f}")
    for key in ("recipe", "png", "json"):
        if key in paths:
            click.echo(f"{key:<26}{paths[key]}")


def precision(model, x, y, target, max_bytes, max_accuracy_drop, out_dir,
              weight_bits) -> None:
    """``sensitivity --activations``: plan, apply, validate, print; exits
    1 (files written) when the budget is not met or validation failed."""
    from tfcompress.analysis import precision_run
    result = precision_run.run(model, x, y, target=target, out_dir=out_dir,
                               max_bytes=max_bytes,
                               max_accuracy_drop=max_accuracy_drop,
                               weight_bits=weight_bits)
    sens, plan, val = (result["sensitivity"], result["plan"],
                       result["validation"])
    click.echo("uniform plans             " + ", ".join(
        f"{k}: {t.bytes} B {100 * t.accuracy:.2f}%"
        for k, t in sens.uniform.items()))
    if plan.weight_bits:
        click.echo("weight bits per layer     " + ", ".join(
            f"{n}={b}" for n, b in plan.weight_bits.items()))
    click.echo("precision per layer       " + ", ".join(
        f"{n}={p}" for n, p in plan.precisions.items()))
    click.echo(f"model bytes               {plan.trial.bytes}")
    click.echo(f"accuracy (float)          {100 * plan.trial.accuracy:.2f}% "
               f"({100 * sens.float_accuracy:.2f}%)")
    litert = val.get("litert") or {}
    micro = val.get("micro") or {}
    click.echo(f"litert agreement          {litert.get('agreement')}")
    if micro:
        click.echo(f"tflm agreement            {micro.get('agreement')} "
                   f"(arena {micro.get('arena_bytes')} B)")
    for key in ("artifact", "model", "recipe", "aeq_recipe", "png", "json"):
        if key in result["paths"]:
            click.echo(f"{key:<26}{result['paths'][key]}")
    if not plan.met:
        raise click.ClickException(
            f"the budget is not met: best plan {plan.trial.bytes} B at "
            f"{100 * plan.drop:.2f} points below float ({plan.budget}); "
            "raise --max-bytes or --max-accuracy-drop")
    if not val["passed"]:
        raise click.ClickException("validation failed: "
                                   + "; ".join(val["failures"]))
