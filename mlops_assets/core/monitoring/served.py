"""What the monitoring reports look at: the rows the serving model acted on, those rows with their labels,
and the serving model's cost history (`cost_history` from documents given; `CostSummary` keeps the
documents it needs summarised, so a day's report reads only what changed since the last one)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.io.objects import ObjectFile
from mlops_assets.core.io.storage import PartitionStore
from mlops_assets.core.serving.scoring import ledger_labels


class NothingServed(LookupError):
    """The ledger holds no acted-on rows for the day."""


@dataclass(frozen=True)
class ServedRows:
    rows: pd.DataFrame  # the day's ledger rows the serving model decided
    version: str  # that model's version
    other_versions: Mapping[str, int] = field(default_factory=dict)  # rows decided by other versions that day
    repeated_rows: int = 0  # acted-on rows left out: their (entity, timestamp) had been decided earlier that day


def decided_rows(ledger_rows: pd.DataFrame, day: str) -> tuple[pd.DataFrame, int]:
    """The day's acted-on rows of the champion route (when there are none, of a canary serving 100 %: it decides
    every row), one per (entity, timestamp): the first decision made, so an entity scored online and again by
    the daily batch counts once. Returns (rows in ledger order, rows left out as repeats). NothingServed when
    the day has no such row."""
    rows = ledger_rows[ledger_rows["route"] == "champion"]
    if rows.empty:
        rows = ledger_rows[ledger_rows["route"] == "canary"]
    if rows.empty:
        raise NothingServed(f"no acted-on predictions in the ledger for {day}")
    ordered = rows.sort_values("scored_at", kind="stable") if "scored_at" in rows.columns else rows
    first = ordered.drop_duplicates(["entity", "timestamp"], keep="first").sort_index()
    return first, len(rows) - len(first)


def served_rows(ledger_rows: pd.DataFrame, day: str) -> ServedRows:
    """The day's decided rows (`decided_rows`) of one version: the one that decided the most rows, on a tie the
    one that decided last. A promotion or rollback during the day (online serving follows the registry at
    once) leaves rows of two versions; each is judged against its own reference, so the others are counted in
    `other_versions` and left to the reports of the days they served."""
    rows, repeated = decided_rows(ledger_rows, day)
    counts = rows["model_version"].value_counts(sort=False)
    version = rows["model_version"].iloc[-1] if "scored_at" not in rows.columns else \
        rows.loc[rows["scored_at"].idxmax(), "model_version"]
    if counts[version] < counts.max():
        version = counts.idxmax()
    others = {str(v): int(n) for v, n in counts.items() if v != version}
    return ServedRows(rows[rows["model_version"] == version] if others else rows, str(version), others, repeated)


def labelled_rows(rows: pd.DataFrame, labeled_examples: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The ledger rows that have a label in `labeled_examples`, with the label (1/0 or the value) as `label`."""
    labels = ledger_labels(labeled_examples, spec)
    labels["timestamp"] = labels["timestamp"].astype("datetime64[us]")
    rows = rows.assign(timestamp=pd.to_datetime(rows["timestamp"]).astype("datetime64[us]"))
    return rows.merge(labels, on=["entity", "timestamp"], how="inner")


def with_labels(rows: pd.DataFrame, labeled_examples: pd.DataFrame | None, spec: DatasetSpec) -> pd.DataFrame:
    """Every ledger row with its label as `label` (1/0 or the value), NaN where none has landed."""
    if labeled_examples is None:
        return rows.assign(label=float("nan"))
    labels = ledger_labels(labeled_examples, spec).drop_duplicates(["entity", "timestamp"])
    labels["timestamp"] = labels["timestamp"].astype("datetime64[us]")
    rows = rows.assign(timestamp=pd.to_datetime(rows["timestamp"]).astype("datetime64[us]"))
    out = rows.merge(labels, on=["entity", "timestamp"], how="left")
    return out.assign(label=out["label"].astype("float64"))


def window_day_reader(ledger, store: PartitionStore, spec: DatasetSpec, version: str,
                      today: tuple[str, pd.DataFrame] | None = None):
    """`read_day(day)` for `performance_window.collect_window`: the day's rows acted on by `version` (another
    model's rows are no evidence about this one) with labels where landed, or None. One ledger day file and
    one labels partition per day read. `today`: (day, rows) already read by the caller."""
    def read_day(day: str) -> pd.DataFrame | None:
        if today is not None and day == today[0]:
            rows = today[1]
        else:
            try:
                rows, _ = decided_rows(ledger.day(day), day)
            except NothingServed:
                return None
        rows = rows[rows["model_version"] == version]
        if rows.empty:
            return None
        labeled = store.read("labeled_examples", day) if store.exists("labeled_examples", day) else None
        return with_labels(rows, labeled, spec)

    return read_day


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


# What the cost history needs from each document; everything else in them is left out of the summary.
_SUMMARISED = {
    "scoring_stats": lambda doc: {"champion": doc.get("champion"), "rows": doc.get("rows"),
                                  "wall_seconds": doc.get("wall_seconds")},
    "candidate_model": lambda doc: {"train_seconds": doc.get("train_seconds", 0.0)},
}
_SUMMARY_FORMAT = 1
_RACY_NS = 2_000_000_000  # file times come from a coarse clock (1 s on some file systems)


class CostSummary:
    """A running summary of the documents the cost history comes from (each day's scoring stats: champion,
    rows, wall time; each candidate's training time), kept in one small JSON file beside the warehouse.

    `history(version, day)` gives exactly what `cost_history` gives over every document, but reads only the
    documents that are new or changed since the summary last saw them (a file's identity, modification time
    and size tell), so a day's report reads the summary and the day's own new documents however long the
    history. A document rewritten (a day re-scored), removed or written late for an earlier day (a candidate
    trained as of a past day) is picked up the next time. The summary is a cache: deleting it, or two runs
    writing it at once, costs one full re-read, never a wrong figure. A document that cannot be read is left
    out (and named in `unreadable`) until it changes, so one bad file does not stop every later report.
    """

    def __init__(self, store: PartitionStore, path: Path | ObjectFile):
        self.store, self.path = store, ObjectFile.of(path)  # a local file, or an object (S3)
        self.unreadable: list[str] = []

    def history(self, version: str, day: str) -> CostHistory:
        summary = self._load()
        # A file modified within a clock tick of the summary's last write could be rewritten later in that
        # same tick with the same size and a recycled inode: such entries are read again ("racily clean").
        racy_after = summary.get("written_ns", 0) - _RACY_NS
        changed = False
        for asset, summarise in _SUMMARISED.items():
            entries = summary.setdefault(asset, {})
            current = self._signatures(asset)
            for gone in set(entries) - set(current):
                del entries[gone]
                changed = True
            for key, signature in sorted(current.items()):
                if entries.get(key, {}).get("signature") == signature and signature[1] < racy_after:
                    continue
                try:  # the signature was taken first: a file replaced meanwhile is read again next time
                    content = summarise(self.store.read_json(asset, key))
                except (OSError, ValueError, AttributeError) as exc:  # not there any more, not JSON, not an object
                    content = {"unreadable": f"{type(exc).__name__}: {exc}"}
                entries[key] = {"signature": signature, **content}
                changed = True
        if changed:
            summary["written_ns"] = time.time_ns()
            self.path.write_bytes(json.dumps(summary, sort_keys=True).encode())
        self.unreadable = [f"{asset}/{key}.json ({entry['unreadable']})" for asset in _SUMMARISED
                           for key, entry in sorted(summary[asset].items()) if "unreadable" in entry]
        usable = {asset: {k: e for k, e in summary[asset].items() if "unreadable" not in e} for asset in _SUMMARISED}
        return cost_history(version, day, usable["scoring_stats"], usable["candidate_model"])

    def _load(self) -> dict:
        try:
            summary = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {"format": _SUMMARY_FORMAT}
        if not isinstance(summary, dict) or summary.get("format") != _SUMMARY_FORMAT:
            return {"format": _SUMMARY_FORMAT}
        return summary

    def _signatures(self, asset: str) -> dict[str, list]:
        """{day: identity of its document} from a listing (locally inode, modification time and size; on S3 the
        ETag, last-modified time and size); no document is read."""
        return self.store.document_signatures(asset)
