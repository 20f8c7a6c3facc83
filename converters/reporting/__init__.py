"""Reports of a run: ``report.json``, ``report.md`` and PNG plots.

Modules:
    report: write the report files of an artifact set.
    plots: the PNG plots (matplotlib, Agg backend).
"""
