"""The one writer of the JSON batchlr prints and writes: strict JSON, with null for a number
that is not finite.

Python's ``json`` writes NaN and infinities as the bare words ``NaN`` and ``Infinity``, which
no other JSON reader (``jq``, JavaScript, ``batchlr.load_config``) accepts; yet a fold whose
training diverged scores NaN, and an LR range test's loss may be infinite.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by ``None``, through dicts, lists
    and tuples (as lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON (see :func:`finite_or_null`)."""
    return json.dumps(finite_or_null(value), indent=indent, allow_nan=False)
