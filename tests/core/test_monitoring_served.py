"""What the monitoring reports look at, as plain functions: the served rows, those rows with labels, and the
serving model's cost history."""

import pandas as pd
import pytest

from mlops_assets.core.config.spec import spec_from_dict
from mlops_assets.core.monitoring.served import NothingServed, cost_history, labelled_rows, served_rows

DAY = "2025-03-10"


def rows(version, route, entities, scores):
    ts = [pd.Timestamp(DAY) + pd.Timedelta(hours=i) for i in range(len(entities))]
    return pd.DataFrame({"entity": entities, "timestamp": ts, "score": scores, "model_version": version,
                         "route": route, "acted_on": route != "shadow"})


def test_the_champion_route_is_what_was_served():
    ledger = pd.concat([rows("v1", "champion", ["a", "b"], [0.1, 0.9]), rows("v2", "canary", ["c"], [0.5]),
                        rows("v1", "shadow", ["c"], [0.4])], ignore_index=True)
    served = served_rows(ledger, DAY)
    assert served.version == "v1" and served.rows["entity"].tolist() == ["a", "b"]


def test_a_canary_serving_every_row_is_what_was_served():
    ledger = pd.concat([rows("v2", "canary", ["a", "b"], [0.1, 0.9]), rows("v1", "shadow", ["a", "b"], [0.2, 0.8])],
                       ignore_index=True)
    served = served_rows(ledger, DAY)
    assert served.version == "v2" and served.rows["route"].tolist() == ["canary", "canary"]


def stamped(frame, minutes):
    return frame.assign(scored_at=[pd.Timestamp(f"{DAY} 12:00", tz="UTC") + pd.Timedelta(minutes=m) for m in minutes])


def test_an_entity_decided_online_and_again_by_the_batch_counts_once_as_first_decided():
    online = stamped(rows("v1", "champion", ["a", "b"], [0.1, 0.9]), [1, 2])
    batch = stamped(rows("v1", "champion", ["a", "b", "c"], [0.15, 0.85, 0.5]), [30, 30, 30])
    batch["timestamp"] = online["timestamp"].tolist() + [pd.Timestamp(DAY) + pd.Timedelta(hours=5)]
    served = served_rows(pd.concat([batch, online], ignore_index=True), DAY)  # ledger order: batch part first
    assert served.rows["entity"].tolist() == ["c", "a", "b"] and served.rows["score"].tolist() == [0.5, 0.1, 0.9]
    assert served.repeated_rows == 2 and served.other_versions == {}


def test_a_promotion_during_the_day_is_judged_on_the_version_that_decided_most():
    before = stamped(rows("v1", "champion", ["a", "b"], [0.1, 0.2]), [1, 2])
    after = stamped(rows("v2", "champion", ["c", "d", "e"], [0.3, 0.4, 0.5]), [3, 4, 5])
    after["timestamp"] = after["timestamp"] + pd.Timedelta(hours=3)
    served = served_rows(pd.concat([before, after], ignore_index=True), DAY)
    assert served.version == "v2" and served.rows["entity"].tolist() == ["c", "d", "e"]
    assert served.other_versions == {"v1": 2}
    # a tie goes to the version that decided last
    tie = served_rows(pd.concat([before, after.iloc[:2]], ignore_index=True), DAY)
    assert tie.version == "v2" and tie.other_versions == {"v1": 2}
    tie = served_rows(pd.concat([stamped(after.iloc[:2], [1, 2]), stamped(before, [3, 4])], ignore_index=True), DAY)
    assert tie.version == "v1"


def test_a_day_with_no_acted_on_rows_is_refused():
    with pytest.raises(NothingServed, match=f"no acted-on predictions in the ledger for {DAY}$"):
        served_rows(rows("v9", "shadow", ["a"], [0.3]), DAY)
    with pytest.raises(NothingServed):
        served_rows(rows("v1", "champion", [], []), DAY)


def test_labelled_rows_are_the_served_rows_with_a_landed_label():
    spec = spec_from_dict({
        "dataset": {"name": "tiny", "timestamp": "ts", "target": "y", "task": "binary_classification",
                    "entity_id": "id", "start_date": "2025-01-01"},
        "features": {"x1": {"type": "numeric"}}, "training": {"estimator": "logistic_regression"},
    })
    served = rows("v1", "champion", ["a", "b", "c"], [0.1, 0.9, 0.6])
    served["timestamp"] = served["timestamp"].astype("datetime64[ns]")  # the ledger's unit need not match
    labeled = pd.DataFrame({"ts": served["timestamp"][[0, 2]].to_numpy(), "id": ["a", "c"], "x1": [0.0, 1.0],
                            "y": [0, 1]})
    out = labelled_rows(served, labeled, spec)
    assert out["entity"].tolist() == ["a", "c"] and out["label"].tolist() == [0, 1]
    assert out["score"].tolist() == [0.1, 0.6]


def test_cost_history_is_the_same_champion_s_earlier_days_and_retraining_up_to_the_day():
    stats = {
        "2025-03-07": {"champion": "v1", "rows": 1}, "2025-03-08": {"champion": "v2", "rows": 2},
        "2025-03-09": {"champion": "v2", "rows": 3}, DAY: {"champion": "v2", "rows": 4},
        "2025-03-11": {"champion": "v2", "rows": 5},
    }
    candidates = {"2025-03-06": {"train_seconds": 1.5}, DAY: {"train_seconds": 2.0},
                  "2025-03-12": {"train_seconds": 9.0}, "2025-03-01": {}}  # an old document without a time
    history = cost_history("v2", DAY, dict(reversed(stats.items())), candidates)
    assert [s["rows"] for s in history.scoring] == [2, 3]  # oldest first, whatever the mapping's order
    assert (history.retrains, history.retrain_seconds) == (3, 3.5)
    assert cost_history("v9", DAY, stats, {}).scoring == [] and cost_history("v9", DAY, {}, {}).retrains == 0


# ------------------------------------------------------------------------------- the running cost summary

import datetime as dt  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

from mlops_assets.core.io.storage import PartitionStore  # noqa: E402
from mlops_assets.core.monitoring.served import CostSummary  # noqa: E402


def iso(i):
    return (dt.date(2025, 1, 1) + dt.timedelta(days=i)).isoformat()


def full_history(store, version, day):
    return cost_history(version, day,
                        {d: store.read_json("scoring_stats", d) for d in store.documents("scoring_stats")},
                        {p: store.read_json("candidate_model", p) for p in store.documents("candidate_model")})


def same(a, b):
    strip = [{k: s[k] for k in ("champion", "rows", "wall_seconds")} for s in a.scoring]
    return (strip, a.retrains, a.retrain_seconds) == (
        [{k: s[k] for k in ("champion", "rows", "wall_seconds")} for s in b.scoring], b.retrains, b.retrain_seconds)


@pytest.fixture
def counted_store(tmp_path, monkeypatch):
    store = PartitionStore(tmp_path / "warehouse")
    store.reads = []
    real = PartitionStore.read_json

    def counting(self, asset, partition):
        self.reads.append((asset, partition))
        return real(self, asset, partition)

    monkeypatch.setattr(PartitionStore, "read_json", counting)
    return store


def test_the_summary_gives_the_full_historys_answer_whatever_happens_to_the_documents(counted_store, tmp_path):
    store, rng = counted_store, random.Random(3)
    summary_path = tmp_path / "monitoring" / "cost_summary.json"
    for step in range(60):
        action, i = rng.random(), rng.randrange(40)
        if action < 0.6:  # a day scored (or re-scored) by one of three models
            store.write_json("scoring_stats", iso(i), {"champion": rng.choice(["v1", "v2", "v3"]),
                                                       "rows": rng.randrange(0, 50), "cpu_seconds": 0.1,
                                                       "wall_seconds": rng.random()})
        elif action < 0.8:  # a candidate trained as of some day, sometimes again
            store.write_json("candidate_model", iso(i), {"train_seconds": round(rng.random() * 10, 3)}
                             if rng.random() < 0.9 else {})
        else:  # a document removed
            store.path(rng.choice(["scoring_stats", "candidate_model"]), iso(i), ".json").unlink(missing_ok=True)
        for version in ("v1", "v2", "v3"):
            day = iso(rng.randrange(45))
            summary = CostSummary(store, summary_path)
            assert same(summary.history(version, day), full_history(store, version, day)), (step, version, day)
            assert summary.unreadable == []


def written_long_ago(path):
    """Days are hours apart in the daily loop; this loop takes milliseconds, so age each document (the
    summary reads again any file changed within a clock tick of its own last write)."""
    old = time.time_ns() - 3_600_000_000_000
    os.utime(path, ns=(old, old))


def test_reads_per_report_do_not_grow_with_history(counted_store, tmp_path):
    store = counted_store
    summary = CostSummary(store, tmp_path / "cost_summary.json")
    reads = []
    for i in range(60):
        written_long_ago(store.write_json("scoring_stats", iso(i), {"champion": "v1", "rows": 10, "wall_seconds": 0.5}))
        if i % 7 == 0:
            written_long_ago(store.write_json("candidate_model", iso(i), {"train_seconds": 1.0}))
        store.reads.clear()
        history = summary.history("v1", iso(i))
        reads.append(len(store.reads))
    assert max(reads) == 2 and history.retrains == 9 and len(history.scoring) == 59
    # without ageing, documents written just before are read once more (one tick later): still bounded
    store.write_json("scoring_stats", iso(60), {"champion": "v1", "rows": 10, "wall_seconds": 0.5})
    store.reads.clear()
    summary.history("v1", iso(60))
    store.reads.clear()
    summary.history("v1", iso(60))
    assert store.reads == [("scoring_stats", iso(60))]
    # the summary itself stays small: a few dozen bytes per document
    assert (tmp_path / "cost_summary.json").stat().st_size < 120 * 70


def test_a_lost_or_broken_summary_is_rebuilt_and_an_unreadable_document_is_left_out(counted_store, tmp_path):
    store = counted_store
    path = tmp_path / "cost_summary.json"
    for i in range(5):
        store.write_json("scoring_stats", iso(i), {"champion": "v1", "rows": 10 + i, "wall_seconds": 0.5})
    assert [s["rows"] for s in CostSummary(store, path).history("v1", iso(9)).scoring] == [10, 11, 12, 13, 14]
    path.write_text("{broken")
    store.reads.clear()
    assert [s["rows"] for s in CostSummary(store, path).history("v1", iso(9)).scoring] == [10, 11, 12, 13, 14]
    assert len(store.reads) == 5  # read again once
    store.path("scoring_stats", iso(2), ".json").write_text('{"rows": ')  # torn
    summary = CostSummary(store, path)
    assert [s["rows"] for s in summary.history("v1", iso(9)).scoring] == [10, 11, 13, 14]
    assert summary.unreadable and "scoring_stats/2025-01-03.json" in summary.unreadable[0]
    store.write_json("scoring_stats", iso(2), {"champion": "v1", "rows": 99, "wall_seconds": 0.5})  # repaired
    summary = CostSummary(store, path)
    assert [s["rows"] for s in summary.history("v1", iso(9)).scoring] == [10, 11, 99, 13, 14]
    assert summary.unreadable == []
