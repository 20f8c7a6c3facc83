"""Layer selectors (``skip=``, ``layers=``, ``per_layer=``), the same for
both Keras generations: plain Python, so neither generation's Keras import
reaches the other.

Example:
    >>> matches(layer, ["conv1", keras.layers.Dense, "re:block_\\d+"])
    True
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Union

__all__ = ["LayerSelector", "matches"]

#: a layer name, a layer class, a class name, or a regex on the name
LayerSelector = Union[str, type, "re.Pattern[str]"]


def matches(layer, selectors: Optional[Iterable[LayerSelector]]) -> bool:
    """True if ``layer`` matches any selector: a layer name, a layer class,
    a class name, or a compiled regex / ``"re:<pattern>"`` on the name."""
    for sel in selectors or ():
        if isinstance(sel, type):
            if isinstance(layer, sel):
                return True
        elif isinstance(sel, re.Pattern):
            if sel.fullmatch(layer.name):
                return True
        elif isinstance(sel, str):
            if sel.startswith("re:"):
                if re.fullmatch(sel[3:], layer.name):
                    return True
            elif sel == layer.name or sel == type(layer).__name__:
                return True
        else:
            raise ValueError(
                f"Could not interpret layer selector {sel!r}: use a layer name, "
                "a layer class, a class name, or 're:<regex>'.")
    return False
