"""Replaying a historical dataset as daily deliveries: features for day D land on D, labels on D + delay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name
from mlops_assets.core.config.spec import DatasetSpec


@dataclass(frozen=True)
class Delivery:
    """What lands on one replay day: that day's features and the labels whose delay has passed."""

    day: dt.date
    files: dict[str, bytes]


def split_by_day(frame: pd.DataFrame, spec: DatasetSpec) -> dict[dt.date, pd.DataFrame]:
    days = pd.to_datetime(frame[spec.timestamp]).dt.date
    return {day: group for day, group in frame.groupby(days, sort=True)}


def load_history(csv_path: Path, spec: DatasetSpec) -> dict[dt.date, pd.DataFrame]:
    return split_by_day(pd.read_csv(csv_path, dtype=str, keep_default_na=False), spec)


def deliveries(history: dict[dt.date, pd.DataFrame], spec: DatasetSpec, start: dt.date, end: dt.date) -> Iterator[Delivery]:
    """Day by day from start to end inclusive. Labels of day D arrive on D + label_delay_days."""
    delay = dt.timedelta(days=spec.label_delay_days)
    day = start
    while day <= end:
        files = {}
        if day in history:
            files[features_file_name(day)] = _csv(history[day][spec.batch_columns])
        label_day = day - delay
        if label_day in history and label_day >= start:
            files[labels_file_name(label_day)] = _csv(history[label_day][spec.label_columns])
        yield Delivery(day, files)
        day += dt.timedelta(days=1)


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def load_labeled_days(store, spec: DatasetSpec, history: dict[dt.date, pd.DataFrame], days: list[dt.date]) -> None:
    """Fill the feature and labeled-example tables for `days` straight from history, through the same core
    functions the assets call (for benchmarks and tests that start from an already-ingested history)."""
    from mlops_assets.core.features.engineering import engineer, join_labels
    from mlops_assets.core.ingestion.validation import read_batch

    for day in days:
        key = day.isoformat()
        batch = read_batch(_csv(history[day][spec.batch_columns]), "history", key, spec, "features")
        labels = read_batch(_csv(history[day][spec.label_columns]), "history", key, spec, "labels")
        table = engineer(batch, spec)
        store.write("feature_table", key, table)
        store.write("labeled_examples", key, join_labels(table, labels, spec)[0])
