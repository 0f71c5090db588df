"""Turning core results into Dagster metadata a person can read in the UI."""


import math

import dagster as dg
import pandas as pd


def table(frame: pd.DataFrame, max_rows: int = 50) -> dg.TableMetadataValue:
    frame = frame.head(max_rows)
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), _type_name(frame[c])) for c in frame.columns])
    records = [dg.TableRecord({str(k): _plain(v) for k, v in row.items()}) for row in frame.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=schema)


def _type_name(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_integer_dtype(col):
        return "int"
    if pd.api.types.is_float_dtype(col):
        return "float"
    return "string"


def _plain(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return str(value)
