"""Reports of a run: ``report.json``, ``report.md`` and PNG plots.

Modules:
    report: write the report files of an artifact set (json, md, html).
    html: the self-contained ``report.html`` page.
    plots: the PNG plots (matplotlib, Agg backend).
    arena_rows: the shipped model's arena row both pages lead with.
"""
