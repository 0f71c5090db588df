"""Turning core results into Dagster metadata a person can read in the UI."""

import math

import dagster as dg
import pandas as pd

from mlops_assets.core.io.json_safe import json_safe


def table(frame: pd.DataFrame, max_rows: int = 50, significant: int | None = None) -> dg.TableMetadataValue:
    """The frame as a UI table; `significant`: floats shown to that many significant digits (the stored report
    keeps them whole), so a column of effects reads 0.5522 rather than 0.5522065186039804."""
    frame = frame.head(max_rows)
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), _type_name(frame[c])) for c in frame.columns])
    records = [dg.TableRecord({str(k): _plain(v, significant) for k, v in row.items()})
               for row in frame.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=schema)


def _type_name(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_integer_dtype(col):
        return "int"
    if pd.api.types.is_float_dtype(col):
        return "float"
    return "string"


def _plain(value, significant: int | None = None):
    """A table cell: lists joined into one text (a cell holds a scalar); the rest as json_safe makes it."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    value = json_safe(value)
    if significant and isinstance(value, float) and math.isfinite(value):
        value = float(f"{value:.{significant}g}")
    return value if value is None or isinstance(value, (int, float, bool, str)) else str(value)
