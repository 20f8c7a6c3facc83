"""Old ``tfcompress.*`` module paths keep working for one release.

See :mod:`converters._moved`; this is the table of the upper layer.
"""

from converters._moved import install

MOVED = {
    **{f"tfcompress.{m}": (f"tfcompress.keras2.{m}",) for m in (
        "pruning", "clustering", "quantization", "schedules", "callbacks",
        "unwrap", "selection", "nesting", "channel_pruning",
        "lowrank", "distill")},
    "tfcompress.lowbit": ("tfcompress.keras2.lowbit",
                          "tfcompress.keras2.lowbit_export"),
    "tfcompress._keras": ("tfcompress.keras2.env",),
    "tfcompress.recipe": ("tfcompress.pipeline.recipe",),
    "tfcompress.stages": ("tfcompress.pipeline.stages",),
    "tfcompress.distribute": ("tfcompress.pipeline.distribute",),
    "tfcompress.data": ("tfcompress.pipeline.data",),
    "tfcompress.stats": ("tfcompress.analysis.stats",),
    "tfcompress.sensitivity": ("tfcompress.analysis.sensitivity",),
    "tfcompress.files": ("converters.files",),
    "tfcompress.report": ("converters.reporting.report",),
    "tfcompress.plots": ("converters.reporting.plots",),
}

install(MOVED)
