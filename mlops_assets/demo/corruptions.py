"""Corruptions of a day's features file, for the demo and the tests of bad input: each breaks the written bytes
in one documented way (a renamed or missing column, wrong types, an empty or cut file, NaN or inf floods, values
out of range, duplicated rows), never the clean frames the generator returns.

Deterministic: the rows a corruption touches follow a fixed pattern, not a random draw.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec

if TYPE_CHECKING:
    from mlops_assets.demo.synthetic import DayBatch

CORRUPTIONS: tuple[str, ...] = (
    "renamed_column", "missing_column", "wrong_dtype", "empty_file", "header_only", "truncated_csv",
    "nan_flood", "inf_flood", "out_of_range", "duplicated_rows",
)
# Corruptions that break one column; the column is recorded in the ground truth.
COLUMN_CORRUPTIONS = ("renamed_column", "missing_column", "wrong_dtype", "nan_flood", "inf_flood", "out_of_range")
# The generator rounds numeric features to this many decimals, so a frame and its CSV hold exactly the same
# values; corrupted values are written with the same precision.
DECIMALS = 4


def corruption_column(spec: DatasetSpec, kind: str) -> str | None:
    """The column a corruption breaks: the spec's last numeric feature (the default drift features are the
    first two, so a corrupt day does not hide inside a drifting column); for out_of_range, the last one with
    a declared bound."""
    if kind not in COLUMN_CORRUPTIONS:
        return None
    candidates = spec.numeric_features
    if kind == "out_of_range":
        candidates = [n for n in candidates if spec.feature(n).min is not None or spec.feature(n).max is not None]
    if not candidates:
        raise ValueError(f"corruption {kind!r} needs a numeric feature{' with min or max' if kind == 'out_of_range' else ''}"
                         f" in spec {spec.name!r}")
    return candidates[-1]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def features_file_bytes(spec: DatasetSpec, batch: DayBatch, corruption: str | None = None) -> bytes:
    """The day's features CSV (header, no index), broken as `corruption` says. Deterministic: the rows a
    corruption touches follow a fixed pattern, not a random draw."""
    frame = batch.features.copy()
    if corruption is None:
        return csv_bytes(frame)
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; expected one of {list(CORRUPTIONS)}")
    col = corruption_column(spec, corruption)
    pos = np.arange(len(frame))
    if corruption == "empty_file":
        return b""
    if corruption == "header_only":
        return csv_bytes(frame.iloc[:0])
    if corruption == "truncated_csv":
        return _truncated(csv_bytes(frame), len(frame))
    if corruption == "renamed_column":
        frame = frame.rename(columns={col: f"{col}_v2"})
    elif corruption == "missing_column":
        frame = frame.drop(columns=[col])
    elif corruption == "wrong_dtype":
        frame[col] = [f"{v:.{DECIMALS}f}".replace(".", ",") for v in frame[col]]  # decimal commas: text
    elif corruption == "nan_flood":
        frame[col] = frame[col].where(pos % 10 == 9, np.nan)  # 90 % missing (all of a day under 10 rows)
    elif corruption == "inf_flood":
        frame[col] = frame[col].where(pos % 10 == 9, np.where(pos % 2 == 0, np.inf, -np.inf))
    elif corruption == "out_of_range":
        frame[col] = _out_of_range(spec, col, frame[col], pos)
    elif corruption == "duplicated_rows":
        frame = pd.concat([frame, frame.iloc[pos % 10 == 0]]).sort_index(kind="stable")  # copies beside originals
    return csv_bytes(frame)


def _truncated(content: bytes, rows: int) -> bytes:
    """The file cut inside the middle data row, in its middle field: fewer fields, no final newline."""
    starts = np.flatnonzero(np.frombuffer(content, dtype=np.uint8) == ord("\n")) + 1  # data row k starts at starts[k]
    row_start = int(starts[rows // 2])
    row = content[row_start: int(starts[rows // 2 + 1]) - 1].decode("utf-8")
    fields = row.split(",")  # generated rows hold no quoted commas
    middle = len(fields) // 2
    field_start = sum(len(f) + 1 for f in fields[:middle])
    cut = field_start + max(1, len(fields[middle]) // 2)
    return content[: row_start + len(row[:cut].encode("utf-8"))]


def _out_of_range(spec: DatasetSpec, col: str, values: pd.Series, pos: np.ndarray) -> pd.Series:
    """Every fifth row beyond the declared bounds (alternating above max and below min when both exist)."""
    f = spec.feature(col)
    span = (f.max - f.min) if f.min is not None and f.max is not None else 10.0
    above = f.max + span * (1 + np.abs(values.to_numpy())) if f.max is not None else None
    below = f.min - span * (1 + np.abs(values.to_numpy())) if f.min is not None else None
    if above is None:
        beyond = below
    elif below is None:
        beyond = above
    else:
        beyond = np.where(pos % 10 == 0, above, below)
    return values.where(pos % 5 != 0, np.round(beyond, DECIMALS))
