"""What the monitoring reports look at: the rows the serving model acted on, those rows with their labels,
and the serving model's cost history. Plain data in, plain data out; the caller reads the files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.serving.scoring import ledger_labels


class NothingServed(LookupError):
    """The ledger holds no acted-on rows for the day."""


@dataclass(frozen=True)
class ServedRows:
    rows: pd.DataFrame  # the day's ledger rows the serving model decided
    version: str  # that model's version


def served_rows(ledger_rows: pd.DataFrame, day: str) -> ServedRows:
    """The day's rows decided by the champion route; when there are none, by a canary serving 100 %
    (it decides every row). NothingServed when the day has neither."""
    rows = ledger_rows[ledger_rows["route"] == "champion"]
    if rows.empty:
        rows = ledger_rows[ledger_rows["route"] == "canary"]
    if rows.empty:
        raise NothingServed(f"no acted-on predictions in the ledger for {day}")
    return ServedRows(rows, rows["model_version"].iloc[0])


def labelled_rows(rows: pd.DataFrame, labeled_examples: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The ledger rows that have a label in `labeled_examples`, with the label (1/0 or the value) as `label`."""
    labels = ledger_labels(labeled_examples, spec)
    labels["timestamp"] = labels["timestamp"].astype("datetime64[us]")
    rows = rows.assign(timestamp=pd.to_datetime(rows["timestamp"]).astype("datetime64[us]"))
    return rows.merge(labels, on=["entity", "timestamp"], how="inner")


@dataclass(frozen=True)
class CostHistory:
    scoring: list[dict]  # the model's scoring stats on earlier days, oldest first
    retrains: int  # candidates trained up to and including the day
    retrain_seconds: float  # their training time, summed


def cost_history(version: str, day: str, scoring_stats: Mapping[str, dict],
                 candidates: Mapping[str, dict]) -> CostHistory:
    """The history `cost_day` compares a day with: the scoring stats of the days before `day` that the same
    model served as champion (another model's cost is no baseline), and the retraining done up to `day`.

    `scoring_stats` and `candidates` map ISO days to the scoring-stats and candidate-model documents."""
    earlier = [scoring_stats[d] for d in sorted(scoring_stats) if d < day]
    trained = [candidates[d] for d in sorted(candidates) if d <= day]
    return CostHistory(scoring=[s for s in earlier if s.get("champion") == version], retrains=len(trained),
                       retrain_seconds=float(sum(t.get("train_seconds", 0.0) for t in trained)))
