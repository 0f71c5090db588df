"""One sanitiser for everything written as JSON (reports, registry rows, benchmark figures, metadata).

`json_safe(value)` returns plain JSON types only, recursively:
- numpy scalars become Python bool/int/float, numpy arrays lists;
- NaN and infinities become None (strict JSON has no NaN), as do pandas' missing markers (NaT, NA);
- dict keys become strings; tuples and sets become lists (sets sorted when their items allow it);
- paths, dates, timestamps and any other object become their `str()`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def json_safe(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.generic):  # remaining numpy scalars: datetime64, str_, ...
        return json_safe(value.item())
    return str(value)  # paths, dates, timestamps, anything else
