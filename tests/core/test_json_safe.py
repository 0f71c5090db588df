"""The one JSON sanitiser: numpy to Python, NaN and infinities to None, paths and dates to text."""

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.core.io.json_safe import json_safe


def test_numpy_values_become_python_values():
    out = json_safe({"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "a": np.array([[1, 2], [3, 4]]),
                     "s": np.str_("x")})
    assert out == {"i": 3, "f": 0.5, "b": True, "a": [[1, 2], [3, 4]], "s": "x"}
    assert type(out["i"]) is int and type(out["f"]) is float and type(out["b"]) is bool


def test_non_finite_numbers_and_missing_markers_become_none_at_any_depth():
    value = {"nan": math.nan, "inf": [np.inf, -np.inf], "nested": {"x": (np.float64("nan"), 1.5)},
             "nat": pd.NaT, "na": pd.NA, "array": np.array([1.0, np.nan])}
    assert json_safe(value) == {"nan": None, "inf": [None, None], "nested": {"x": [None, 1.5]}, "nat": None,
                                "na": None, "array": [1.0, None]}
    json.dumps(json_safe(value), allow_nan=False)  # strict JSON


def test_paths_dates_keys_and_sets_become_text_and_lists():
    value = {1: Path("/tmp/x"), "day": dt.date(1997, 5, 4), "at": pd.Timestamp("2025-01-01 10:00"),
             "set": {"b", "a"}, "d64": np.datetime64("2025-01-02")}
    assert json_safe(value) == {"1": "/tmp/x", "day": "1997-05-04", "at": "2025-01-01 10:00:00", "set": ["a", "b"],
                                "d64": "2025-01-02"}


def test_plain_values_pass_unchanged():
    value = {"s": "text", "n": None, "t": True, "i": 2, "f": 0.25, "l": [1, "a"]}
    assert json_safe(value) == value
